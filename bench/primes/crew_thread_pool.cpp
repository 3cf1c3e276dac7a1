// Primes on crew::ThreadPool: pool.map(is_prime, [0, N)) with default options (automatic chunk
// size), then std::accumulate over the result vector, as a user would write it.
//
//   BM_CrewThreadPool_Primes           the pool is built once, outside the timed region: the
//                                      steady-state cost of a map on a running pool.
//   BM_CrewThreadPool_PrimesWithStart  the pool is built and shut down inside the timed region:
//                                      the whole `with ThreadPool(W) as pool: map` block.
//   BM_CrewThreadPool_PrimesImap       the pool is built once; `for (x : pool.imap(is_prime, …))
//                                      sum += x`: no N-element result vector, and the caller sums
//                                      each chunk while the workers compute the next ones.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <ranges>
#include <vector>

#include "bench_config.hpp"
#include "crew/thread_pool.hpp"
#include "crew/workloads/primes.hpp"

namespace {

std::int64_t sum_primes_with(crew::ThreadPool& pool, std::int64_t n) {
  const std::vector<std::int64_t> primes =
      pool.map(crew::workloads::is_prime, std::views::iota(std::int64_t{0}, n));
  return std::accumulate(primes.begin(), primes.end(), std::int64_t{0});
}

void BM_CrewThreadPool_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(state.range(1))});
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    sum = sum_primes_with(pool, limit);
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

void BM_CrewThreadPool_PrimesImap(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(state.range(1))});
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    sum = 0;
    for (std::int64_t x :
         pool.imap(crew::workloads::is_prime, std::views::iota(std::int64_t{0}, limit))) {
      sum += x;
    }
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

void BM_CrewThreadPool_PrimesWithStart(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto workers = static_cast<std::size_t>(state.range(1));
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    crew::ThreadPool pool({.workers = workers});
    sum = sum_primes_with(pool, limit);
    benchmark::DoNotOptimize(sum);
  }  // ~ThreadPool joins the workers: inside the timed region
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_CrewThreadPool_Primes)
    ->ArgNames({"n", "workers"})
    ->ArgsProduct({{crew_bench::primes_small_n(), crew_bench::primes_large_n()},
                   {1, crew_bench::kThreads}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_CrewThreadPool_PrimesImap)
    ->ArgNames({"n", "workers"})
    ->ArgsProduct({{crew_bench::primes_small_n(), crew_bench::primes_large_n()},
                   {1, crew_bench::kThreads}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_CrewThreadPool_PrimesWithStart)
    ->ArgNames({"n", "workers"})
    ->ArgsProduct({{crew_bench::primes_small_n(), crew_bench::primes_large_n()},
                   {1, crew_bench::kThreads}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
