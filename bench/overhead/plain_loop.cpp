// Per-item overhead baselines: the trivial function (x*3+1) over map_items() ints in a plain loop
// on the calling thread.
//
//   BM_PlainLoop_Map       writes into an output vector allocated once, outside the timed region
//                          (what the oneTBB and OpenMP peers do).
//   BM_PlainLoop_MapAlloc  allocates the output vector inside the timed region, as crew's map
//                          must (it returns a new std::vector): the fair serial baseline for it.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "bench_config.hpp"

namespace {

void BM_PlainLoop_Map(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  std::vector<int> out(in.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = crew_bench::kTrivial(in[i]);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  if (!crew_bench::is_trivial_map_of_input(out)) state.SkipWithError("wrong map result");
  crew_bench::report_per(state, in.size());
}

std::vector<int> map_with_alloc(const std::vector<int>& in) {
  std::vector<int> out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = crew_bench::kTrivial(in[i]);
  return out;
}

void BM_PlainLoop_MapAlloc(benchmark::State& state) {
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

BENCHMARK(BM_PlainLoop_Map)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_PlainLoop_MapAlloc)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
