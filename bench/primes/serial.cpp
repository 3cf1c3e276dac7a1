// Primes, serial: the article's loop, sum(is_prime(i) for i in range(N)), on the calling thread.
// The baseline every primes speed-up is measured against.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "bench_config.hpp"
#include "crew/workloads/primes.hpp"

namespace {

void BM_Serial_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    sum = 0;
    for (std::int64_t i = 0; i < limit; ++i) sum += crew::workloads::is_prime(i);
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_Serial_Primes)
    ->ArgName("n")
    ->Arg(crew_bench::primes_small_n())
    ->Arg(crew_bench::primes_large_n())
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
