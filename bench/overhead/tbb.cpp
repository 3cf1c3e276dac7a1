// Per-item and per-task overhead of oneTBB, in a task_arena of kThreads threads built once
// outside the timed region, with the trivial function (x*3+1).
//
//   BM_TBB_Map                 tbb::parallel_for over a blocked_range (auto_partitioner), writing
//                              into an output vector allocated once, outside the timed region.
//   BM_TBB_MapAlloc            the same, allocating the output inside the timed region (what
//                              crew's map does): like for like with BM_CrewThreadPool_Map.
//   BM_TBB_TaskGroupBulk       bulk_tasks() × task_group::run, then wait(); each task writes its
//                              result into a preallocated slot.
//   BM_TBB_TaskGroupRoundTrip  one run → wait at a time. The waiting thread may run the task
//                              itself, so this is not a hand-off to another thread.
#include <benchmark/benchmark.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "bench_config.hpp"

namespace {

void map_into(tbb::task_arena& arena, const std::vector<int>& in, std::vector<int>& out) {
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in.size()),
                      [&](const tbb::blocked_range<std::size_t>& range) {
                        for (std::size_t i = range.begin(); i != range.end(); ++i) {
                          out[i] = crew_bench::kTrivial(in[i]);
                        }
                      });
  });
}

void BM_TBB_Map(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  tbb::task_arena arena(crew_bench::kThreads);
  arena.initialize();
  std::vector<int> out(in.size());
  for (auto _ : state) {
    map_into(arena, in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  if (!crew_bench::is_trivial_map_of_input(out)) state.SkipWithError("wrong map result");
  crew_bench::report_per(state, in.size());
}

void BM_TBB_MapAlloc(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  tbb::task_arena arena(crew_bench::kThreads);
  arena.initialize();
  auto map_with_alloc = [&] {
    std::vector<int> out(in.size());
    map_into(arena, in, out);
    return out;
  };
  if (!crew_bench::is_trivial_map_of_input(map_with_alloc())) {
    state.SkipWithError("wrong map result");
    return;
  }
  for (auto _ : state) {
    std::vector<int> out = map_with_alloc();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }  // the output is freed inside the timed region, as crew's is
  crew_bench::report_per(state, in.size());
}

void BM_TBB_TaskGroupBulk(benchmark::State& state) {
  const std::size_t tasks = crew_bench::bulk_tasks();
  tbb::task_arena arena(crew_bench::kThreads);
  arena.initialize();
  std::vector<int> results(tasks);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::task_group group;
      for (std::size_t i = 0; i < tasks; ++i) {
        group.run([&results, i] { results[i] = crew_bench::kTrivial(static_cast<int>(i)); });
      }
      group.wait();
    });
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

void BM_TBB_TaskGroupRoundTrip(benchmark::State& state) {
  tbb::task_arena arena(crew_bench::kThreads);
  arena.initialize();
  int x = 0;
  for (auto _ : state) {
    arena.execute([&] {
      tbb::task_group group;
      group.run([&x] { x = crew_bench::kTrivial(x) & 0xffff; });
      group.wait();
    });
    benchmark::DoNotOptimize(x);
  }
  crew_bench::report_per(state, 1, "task");
}

BENCHMARK(BM_TBB_Map)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TBB_MapAlloc)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TBB_TaskGroupBulk)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TBB_TaskGroupRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
