// Per-task overhead of one std::thread per task, with the trivial function (x*3+1): the cost a
// pool exists to avoid.
//
//   BM_StdThread_SpawnBulk  thread_tasks() threads started, then all joined; each writes its
//                           result into a preallocated slot. Fewer tasks than the pools' bulk
//                           runs (thousands of live threads would measure the scheduler), but
//                           reported per task all the same.
//   BM_StdThread_RoundTrip  one thread started and joined at a time.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "bench_config.hpp"

namespace {

void BM_StdThread_SpawnBulk(benchmark::State& state) {
  const std::size_t tasks = crew_bench::thread_tasks();
  std::vector<int> results(tasks);
  std::vector<std::thread> threads;
  threads.reserve(tasks);
  for (auto _ : state) {
    for (std::size_t i = 0; i < tasks; ++i) {
      threads.emplace_back(
          [&results, i] { results[i] = crew_bench::kTrivial(static_cast<int>(i)); });
    }
    for (auto& thread : threads) thread.join();
    threads.clear();
    benchmark::DoNotOptimize(results.data());
    benchmark::ClobberMemory();
  }
  const auto n = static_cast<std::int64_t>(tasks);
  if (std::accumulate(results.begin(), results.end(), std::int64_t{0}) !=
      3 * (n * (n - 1) / 2) + n) {
    state.SkipWithError("wrong sum of task results");
  }
  crew_bench::report_per(state, tasks, "task");
}

void BM_StdThread_RoundTrip(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    std::thread thread([&x] { x = crew_bench::kTrivial(x) & 0xffff; });
    thread.join();
    benchmark::DoNotOptimize(x);
  }
  crew_bench::report_per(state, 1, "task");
}

BENCHMARK(BM_StdThread_SpawnBulk)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StdThread_RoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
