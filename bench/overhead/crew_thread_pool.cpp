// Per-item and per-task overhead of crew::ThreadPool, with a trivial function (x*3+1).
//
//   BM_CrewThreadPool_Map              pool.map(f, vector of map_items() ints), default options.
//                                      map returns a new vector: its allocation (and freeing)
//                                      is inside the timed region, unlike the oneTBB and OpenMP
//                                      peers' preallocated output (compare with *_MapAlloc too).
//   BM_CrewThreadPool_MapVoid          pool.map over the indices of a void function writing
//                                      out[i] = f(in[i]) into a preallocated vector: what the
//                                      oneTBB and OpenMP peers do, so crew's own per-item cost
//                                      without the output's allocation (a void map stores nothing).
//   BM_CrewThreadPool_SubmitBulk       bulk_tasks() × pool.submit(f, i), then get() on every
//                                      Future: per task, submit + its Future + get.
//   BM_CrewThreadPool_SubmitRoundTrip  one submit → get at a time: the latency of handing one
//                                      task to an idle (sleeping) worker and getting it back.
// The pool is built once, outside the timed region, in each.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <ranges>
#include <vector>

#include "bench_config.hpp"
#include "crew/thread_pool.hpp"

namespace {

void BM_CrewThreadPool_Map(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(state.range(0))});
  if (!crew_bench::is_trivial_map_of_input(pool.map(crew_bench::kTrivial, in))) {
    state.SkipWithError("wrong map result");
    return;
  }
  for (auto _ : state) {
    std::vector<int> out = pool.map(crew_bench::kTrivial, in);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  crew_bench::report_per(state, in.size());
}

void BM_CrewThreadPool_MapVoid(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(state.range(0))});
  std::vector<int> out(in.size());
  const auto write = [&in, &out](std::size_t i) noexcept { out[i] = crew_bench::kTrivial(in[i]); };
  const auto indices = std::views::iota(std::size_t{0}, in.size());
  for (auto _ : state) {
    pool.map(write, indices);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  if (!crew_bench::is_trivial_map_of_input(out)) state.SkipWithError("wrong map result");
  crew_bench::report_per(state, in.size());
}

void BM_CrewThreadPool_SubmitBulk(benchmark::State& state) {
  const std::size_t tasks = crew_bench::bulk_tasks();
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(crew_bench::kThreads)});
  std::vector<crew::Future<int>> futures;
  futures.reserve(tasks);
  std::int64_t sum = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < tasks; ++i) {
      futures.push_back(pool.submit(crew_bench::kTrivial, static_cast<int>(i)));
    }
    sum = 0;
    for (auto& future : futures) sum += future.get();
    futures.clear();  // drops the futures (and with them the tasks' states): timed
    benchmark::DoNotOptimize(sum);
  }
  const auto n = static_cast<std::int64_t>(tasks);
  if (sum != 3 * (n * (n - 1) / 2) + n) state.SkipWithError("wrong sum of task results");
  crew_bench::report_per(state, tasks, "task");
}

void BM_CrewThreadPool_SubmitRoundTrip(benchmark::State& state) {
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(crew_bench::kThreads)});
  int x = 0;
  for (auto _ : state) {
    x = pool.submit(crew_bench::kTrivial, x).get() & 0xffff;
    benchmark::DoNotOptimize(x);
  }
  crew_bench::report_per(state, 1, "task");
}

BENCHMARK(BM_CrewThreadPool_Map)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(crew_bench::kThreads)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CrewThreadPool_MapVoid)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(crew_bench::kThreads)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CrewThreadPool_SubmitBulk)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CrewThreadPool_SubmitRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
