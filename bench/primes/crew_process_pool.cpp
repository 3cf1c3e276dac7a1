// Primes on crew::ProcessPool: pool.map(is_prime, [0, N)) with default options (automatic chunk
// size), then std::accumulate over the result vector: the article's
// `sum(Pool(2).map(is_prime, range(N)))`, with forked worker processes.
//
//   BM_CrewProcessPool_Primes           the pool is built once, outside the timed region, and
//                                       runs one untimed map first (below): the steady-state
//                                       cost of a map on running workers.
//   BM_CrewProcessPool_PrimesWithStart  the pool is built and shut down inside the timed region:
//                                       the zygote's fork, the workers' start, the map, and the
//                                       shutdown that waits until every child is reaped — the
//                                       article's whole `with Pool(2) as p:` block.
//
// The items (8-byte ints) and results cross through the workers' sockets by memcpy: 2 × 8 bytes
// per item, 160 MB in all for N = 1e7.
//
// Why the untimed first map: until the pool ends, its zygote and workers share this process's
// memory as it was at the fork, copy-on-write, so the first write to each such page costs this
// process a page copy and a TLB flush on the other CPUs. After a benchmark that grew the heap
// (BM_CrewThreadPool_SubmitBulk's 100,000 futures), the first map of the primes below 1e6 took
// 131 ms instead of about 50 on this VM, so the figure depended on what ran before. The warm-up
// writes those pages once; *WithStart keeps the cost, as a program that starts a pool pays it.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <ranges>
#include <vector>

#include "bench_config.hpp"
#include "crew/process_pool.hpp"
#include "crew/workloads/primes.hpp"

namespace {

std::int64_t sum_primes_with(crew::ProcessPool& pool, std::int64_t n) {
  const std::vector<std::int64_t> primes =
      pool.map(crew::workloads::is_prime, std::views::iota(std::int64_t{0}, n));
  return std::accumulate(primes.begin(), primes.end(), std::int64_t{0});
}

void BM_CrewProcessPool_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  crew::ProcessPool pool(crew_bench::process_pool_options(state.range(1)));
  std::int64_t sum = sum_primes_with(pool, std::min(n, crew_bench::primes_small_n()));
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    sum = sum_primes_with(pool, limit);
    benchmark::DoNotOptimize(sum);
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

void BM_CrewProcessPool_PrimesWithStart(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  std::int64_t sum = 0;
  for (auto _ : state) {
    const std::int64_t limit = crew_bench::opaque(n);
    crew::ProcessPool pool(crew_bench::process_pool_options(state.range(1)));
    sum = sum_primes_with(pool, limit);
    benchmark::DoNotOptimize(sum);
  }  // ~ProcessPool: shutdown(wait), every worker and the zygote reaped: inside the timed region
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_CrewProcessPool_Primes)
    ->ArgNames({"n", "workers"})
    ->ArgsProduct({{crew_bench::primes_small_n(), crew_bench::primes_large_n()},
                   {crew_bench::kThreads}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_CrewProcessPool_PrimesWithStart)
    ->ArgNames({"n", "workers"})
    ->ArgsProduct({{crew_bench::primes_small_n(), crew_bench::primes_large_n()},
                   {crew_bench::kThreads}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
