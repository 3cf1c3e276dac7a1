// Primes with oneTBB: tbb::parallel_reduce over a blocked_range (default auto_partitioner) inside
// a task_arena of kThreads threads, built once outside the timed region (like a pool).
#include <benchmark/benchmark.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>
#include <tbb/task_arena.h>

#include <cstdint>
#include <functional>

#include "bench_config.hpp"
#include "crew/workloads/primes.hpp"

namespace {

void BM_TBB_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  tbb::task_arena arena(crew_bench::kThreads);
  arena.initialize();
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    sum = arena.execute([limit] {
      return tbb::parallel_reduce(
          tbb::blocked_range<std::int64_t>(0, limit), std::int64_t{0},
          [](const tbb::blocked_range<std::int64_t>& range, std::int64_t total) {
            for (std::int64_t i = range.begin(); i != range.end(); ++i) {
              total += crew::workloads::is_prime(i);
            }
            return total;
          },
          std::plus<>{});
    });
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_TBB_Primes)
    ->ArgName("n")
    ->Arg(crew_bench::primes_small_n())
    ->Arg(crew_bench::primes_large_n())
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
