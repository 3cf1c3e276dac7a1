// Per-item and per-task overhead of OpenMP on kThreads threads, with the trivial function
// (x*3+1). The OpenMP runtime keeps its threads between regions, like a pool built once.
//
//   BM_OpenMP_Map        `#pragma omp parallel for` (static schedule) writing into an output
//                        vector allocated once, outside the timed region.
//   BM_OpenMP_MapAlloc   the same, allocating the output inside the timed region (what crew's map
//                        does): like for like with BM_CrewThreadPool_Map.
//   BM_OpenMP_TaskBulk   bulk_tasks() × `#pragma omp task` from one thread of a parallel region,
//                        then the region's barrier; each task writes into a preallocated slot.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "bench_config.hpp"

namespace {

void map_into(const std::vector<int>& in, std::vector<int>& out) {
  const auto size = static_cast<std::int64_t>(in.size());
#pragma omp parallel for schedule(static) num_threads(crew_bench::kThreads)
  for (std::int64_t i = 0; i < size; ++i) {
    out[static_cast<std::size_t>(i)] = crew_bench::kTrivial(in[static_cast<std::size_t>(i)]);
  }
}

std::vector<int> map_with_alloc(const std::vector<int>& in) {
  std::vector<int> out(in.size());
  map_into(in, out);
  return out;
}

void BM_OpenMP_Map(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  std::vector<int> out(in.size());
  for (auto _ : state) {
    map_into(in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  if (!crew_bench::is_trivial_map_of_input(out)) state.SkipWithError("wrong map result");
  crew_bench::report_per(state, in.size());
}

void BM_OpenMP_MapAlloc(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  if (!crew_bench::is_trivial_map_of_input(map_with_alloc(in))) {
    state.SkipWithError("wrong map result");
    return;
  }
  for (auto _ : state) {
    std::vector<int> out = map_with_alloc(in);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }  // the output is freed inside the timed region, as crew's is
  crew_bench::report_per(state, in.size());
}

void BM_OpenMP_TaskBulk(benchmark::State& state) {
  const std::size_t tasks = crew_bench::bulk_tasks();
  std::vector<int> results(tasks);
  for (auto _ : state) {
#pragma omp parallel num_threads(crew_bench::kThreads)
#pragma omp single
    for (std::size_t i = 0; i < tasks; ++i) {
#pragma omp task firstprivate(i) shared(results)
      results[i] = crew_bench::kTrivial(static_cast<int>(i));
    }
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

BENCHMARK(BM_OpenMP_Map)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OpenMP_MapAlloc)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OpenMP_TaskBulk)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
