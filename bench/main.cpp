// crew_bench's driver: Google Benchmark's main, plus the smoke switch and the run's context
// (sizes, smoke mode) recorded in every report so a JSON file says what it measured.
//
//   build/release/crew_bench                                  # everything (minutes)
//   build/release/crew_bench --benchmark_filter=Primes        # one group
//   CREW_BENCH_SMOKE=1 build/release/crew_bench --benchmark_min_time=0.01   # the smoke test
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "bench_config.hpp"

namespace crew_bench {

bool smoke_mode() noexcept {
  static const bool smoke = [] {
    const char* value = std::getenv("CREW_BENCH_SMOKE");
    return value != nullptr && std::string_view(value) != "" && std::string_view(value) != "0";
  }();
  return smoke;
}

}  // namespace crew_bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("crew_smoke", crew_bench::smoke_mode() ? "1" : "0");
  benchmark::AddCustomContext("crew_threads", std::to_string(crew_bench::kThreads));
  benchmark::AddCustomContext("crew_primes_n", std::to_string(crew_bench::primes_small_n()) + "," +
                                                   std::to_string(crew_bench::primes_large_n()));
  benchmark::AddCustomContext("crew_map_items", std::to_string(crew_bench::map_items()));
  benchmark::AddCustomContext("crew_bulk_tasks", std::to_string(crew_bench::bulk_tasks()));
  benchmark::AddCustomContext("crew_thread_tasks", std::to_string(crew_bench::thread_tasks()));
  benchmark::AddCustomContext("crew_process_bulk_tasks",
                              std::to_string(crew_bench::process_bulk_tasks()));
  // Fetch sizes as key=value pairs (scripts/bench-report.py reads them).
  benchmark::AddCustomContext(
      "crew_fetch_article",
      "urls=" + std::to_string(crew_bench::kFetchArticleUrls) +
          ",latency_ms=" + std::to_string(crew_bench::fetch_article_latency_ms()) +
          ",body_bytes=" + std::to_string(crew_bench::kFetchArticleBodyBytes) +
          ",workers=" + std::to_string(crew_bench::kFetchArticleWorkers));
  std::string concurrency;
  for (const std::int64_t c : crew_bench::fetch_many_concurrency()) {
    if (!concurrency.empty()) concurrency += '/';
    concurrency += std::to_string(c);
  }
  benchmark::AddCustomContext(
      "crew_fetch_many", "urls=" + std::to_string(crew_bench::fetch_many_urls()) +
                             ",latency_ms=" + std::to_string(crew_bench::fetch_many_latency_ms()) +
                             ",body_bytes=" + std::to_string(crew_bench::kFetchManyBodyBytes) +
                             ",concurrency=" + concurrency);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
