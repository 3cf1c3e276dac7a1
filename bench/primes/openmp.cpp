// Primes with OpenMP: the article's loop under
// `#pragma omp parallel for schedule(dynamic, 1000) reduction(+ : sum)` on kThreads threads. The
// OpenMP runtime keeps its threads between regions, like a pool built once.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>

#include "bench_config.hpp"
#include "crew/workloads/primes.hpp"

namespace {

void BM_OpenMP_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    std::int64_t total = 0;
#pragma omp parallel for schedule(dynamic, 1000) reduction(+ : total) num_threads(crew_bench::kThreads)
    for (std::int64_t i = 0; i < limit; ++i) total += crew::workloads::is_prime(i);
    sum = total;
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_OpenMP_Primes)
    ->ArgName("n")
    ->Arg(crew_bench::primes_small_n())
    ->Arg(crew_bench::primes_large_n())
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
