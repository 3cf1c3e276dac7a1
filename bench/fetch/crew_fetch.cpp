// The article's IO job on crew's fetch engines: crew::workloads::fetch_urls against a loopback
// `crew serve` run as a separate process (bench/fetch/serve_process.hpp), started once per
// benchmark run outside the timed region, so the CPU time and memory measured are the client's.
//
//   BM_Fetch_Article/engine:E              the article's 13 URLs × 200 ms × 50 KiB, 4 workers, on
//                                          serial, thread, process and event-loop.
//   BM_Fetch_Many/engine:E/concurrency:C   2,000 URLs × 100 ms × 5 KiB, C = 50 and 500, on
//                                          thread and event-loop, and on process at C = 50 only
//                                          (500 processes on 2 CPUs spend seconds starting); no
//                                          serial (it would take 200 s).
//
// The time is manual: a crew::Stopwatch around the fetch_urls call alone (pools are started and
// shut down inside it), which also gives the CPU time: this process's (every thread) plus that of
// the child processes reaped during the call (the process engine's zygote and workers). Counters,
// per run: ideal_ratio (wall / the ideal ⌈URLs/workers⌉ × latency), cpu_ms, and for Many
// cpu_per_req_us, req/s (items_per_second), connections (TCP connections the server accepted),
// server_peak (the most requests the server saw in flight at once), rss_growth_mib (see below).
//
// Each run is checked outside the timed region: every URL has a result, in order, status 200,
// the whole body, one attempt, and the server answered exactly one request per URL; otherwise
// the benchmark fails with an error naming the first bad URL.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench_config.hpp"
#include "crew/timing.hpp"
#include "crew/workloads/fetch.hpp"
#include "fetch/serve_process.hpp"

namespace {

using crew::workloads::FetchEngine;

constexpr double kMiB = 1024.0 * 1024.0;

// This process's resident set now, in bytes (/proc/self/statm); 0 when unreadable.
std::int64_t current_rss_bytes() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  long size = 0;
  long resident = 0;
  const int read = std::fscanf(file, "%ld %ld", &size, &resident);
  std::fclose(file);
  return read == 2 ? static_cast<std::int64_t>(resident) * ::sysconf(_SC_PAGESIZE) : 0;
}

// Empty when `run` fetched every URL once, in order, whole; else the first problem, in words.
std::string check_run(const crew::workloads::FetchRun& run, const std::vector<std::string>& urls,
                      std::uint64_t body_bytes) {
  if (run.stopped) return "the run says it was stopped";
  if (run.results.size() != urls.size()) {
    return std::to_string(run.results.size()) + " results for " + std::to_string(urls.size()) +
           " URLs";
  }
  std::size_t bad = 0;
  std::string first;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const crew::workloads::FetchResult& r = run.results[i];
    std::string problem;
    if (r.url != urls[i]) {
      problem = "result " + std::to_string(i) + " is for " + r.url + ", not " + urls[i];
    } else if (!r.ok()) {
      problem = r.url + ": " + r.error;
    } else if (r.status != 200 || r.bytes != body_bytes || r.attempts != 1) {
      problem = r.url + ": status " + std::to_string(r.status) + ", " + std::to_string(r.bytes) +
                " bytes (want " + std::to_string(body_bytes) + "), " + std::to_string(r.attempts) +
                " attempts";
    }
    if (!problem.empty() && bad++ == 0) first = problem;
  }
  if (bad == 0) return {};
  return std::to_string(bad) + " of " + std::to_string(urls.size()) +
         " URLs failed; first: " + first;
}

struct Scenario {
  FetchEngine engine;
  std::size_t workers;  // the engine's workers / the event loop's concurrency
  std::size_t urls;
  int latency_ms;
  std::uint64_t body_bytes;
  bool many;  // report per request (req/s, CPU and RSS per request)
};

// Runs `scenario` once per iteration against a server of its own, started here.
void run_fetch(benchmark::State& state, const Scenario& scenario) {
  const std::string latency = std::to_string(scenario.latency_ms) + "ms";
  const std::string body = std::to_string(scenario.body_bytes);
  std::vector<std::string> urls;
  std::unique_ptr<crew_bench::ServeProcess> server;
  try {
    server = std::make_unique<crew_bench::ServeProcess>(latency, body);
    urls = crew::workloads::local_urls(server->port(), scenario.urls);
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
    return;
  }
  const crew::workloads::FdBudget budget = crew::workloads::reserve_file_descriptors(
      scenario.workers, crew::workloads::fds_per_transfer(scenario.engine));
  if (budget.concurrency < scenario.workers) {
    state.SkipWithError(("open-file limit too low: " + budget.warning).c_str());
    return;
  }
  const crew::workloads::FetchOptions options{};

  // The ideal: every worker busy from the start, each request exactly its latency.
  const std::size_t waves = scenario.engine == FetchEngine::kSerial
                                ? scenario.urls
                                : (scenario.urls + scenario.workers - 1) / scenario.workers;
  const double ideal_s = static_cast<double>(waves) * scenario.latency_ms / 1000.0;

  double wall_s = 0;
  double cpu_s = 0;
  double connections = 0;
  double server_cpu_s = 0;
  double loop_connections = 0;
  double rss_growth_mib = 0;  // the largest over the iterations
  double workers_rss_mib = 0;
  std::uint64_t server_peak = 0;
  for (auto _ : state) {
    // Outside the timed region: give freed heap back (earlier benchmarks', earlier iterations'),
    // so the RSS growth below is what this run needed, and read the server's counters.
    ::malloc_trim(0);
    const std::int64_t rss_before = current_rss_bytes();
    crew_bench::ServeStats before;
    try {
      before = server->stats();
      server_cpu_s -= server->cpu_seconds();
    } catch (const std::exception& error) {
      state.SkipWithError(error.what());
      break;
    }

    crew::workloads::FetchRun run;
    crew::Timing timing;
    try {
      const crew::Stopwatch watch;  // resets the peak RSS (VmHWM) to the RSS now
      run = crew::workloads::fetch_urls(urls, scenario.engine, scenario.workers, options);
      timing = watch.elapsed();
    } catch (const std::exception& error) {
      state.SkipWithError((std::string("fetch_urls threw: ") + error.what()).c_str());
      break;
    }
    const double seconds = std::chrono::duration<double>(timing.wall).count();
    state.SetIterationTime(seconds);

    std::string problem = check_run(run, urls, scenario.body_bytes);
    crew_bench::ServeStats after;
    try {
      after = server->stats();
      server_cpu_s += server->cpu_seconds();
    } catch (const std::exception& error) {
      problem = error.what();
    }
    if (problem.empty() && after.requests - before.requests != urls.size()) {
      problem = "the server answered " + std::to_string(after.requests - before.requests) +
                " requests for " + std::to_string(urls.size()) + " URLs";
    }
    if (!problem.empty()) {
      state.SkipWithError(problem.c_str());
      break;
    }
    wall_s += seconds;
    cpu_s += std::chrono::duration<double>(timing.cpu()).count();
    // The second /stats request's own connection is in the delta.
    connections += static_cast<double>(after.connections - before.connections - 1);
    loop_connections += static_cast<double>(run.event_loop.connections_opened);
    server_peak = std::max(server_peak, after.peak_in_flight);
    if (timing.peak_rss_is_block_peak && rss_before > 0) {
      rss_growth_mib =
          std::max(rss_growth_mib, static_cast<double>(timing.peak_rss_bytes - rss_before) / kMiB);
    }
    if (run.process_stats) {
      long kib = 0;
      for (const crew::WorkerRecord& worker : run.process_stats->workers) {
        kib += worker.peak_rss_kib;
      }
      workers_rss_mib = std::max(workers_rss_mib, static_cast<double>(kib) / 1024.0);
    }
  }
  if (state.error_occurred()) return;

  using benchmark::Counter;
  state.counters["ideal_ratio"] = Counter(wall_s / ideal_s, Counter::kAvgIterations);
  state.counters["cpu_ms"] = Counter(cpu_s * 1e3, Counter::kAvgIterations);
  state.counters["connections"] = Counter(connections, Counter::kAvgIterations);
  state.counters["server_cpu_ms"] = Counter(server_cpu_s * 1e3, Counter::kAvgIterations);
  state.counters["server_peak"] = static_cast<double>(server_peak);
  if (scenario.engine == FetchEngine::kEventLoop) {
    state.counters["loop_connections"] = Counter(loop_connections, Counter::kAvgIterations);
  }
  if (scenario.many) {
    state.counters["cpu_per_req_us"] =
        Counter(cpu_s * 1e6 / static_cast<double>(scenario.urls), Counter::kAvgIterations);
    state.counters["rss_growth_mib"] = rss_growth_mib;
    if (scenario.engine == FetchEngine::kProcess)
      state.counters["workers_rss_mib"] = workers_rss_mib;
    crew_bench::report_per(state, scenario.urls, "request");
  }
}

const FetchEngine kEngines[] = {FetchEngine::kSerial, FetchEngine::kThread, FetchEngine::kProcess,
                                FetchEngine::kEventLoop};

// Registered by name (engine:serial, engine:event-loop, …), not by number.
[[maybe_unused]] const bool kRegistered = [] {
  for (const FetchEngine engine : kEngines) {
    const std::string name =
        "BM_Fetch_Article/engine:" + std::string(crew::workloads::fetch_engine_name(engine));
    const Scenario scenario{.engine = engine,
                            .workers = crew_bench::kFetchArticleWorkers,
                            .urls = crew_bench::kFetchArticleUrls,
                            .latency_ms = crew_bench::fetch_article_latency_ms(),
                            .body_bytes = crew_bench::kFetchArticleBodyBytes,
                            .many = false};
    benchmark::RegisterBenchmark(
        name.c_str(), [scenario](benchmark::State& state) { run_fetch(state, scenario); })
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime();
  }
  for (const FetchEngine engine : kEngines) {
    if (engine == FetchEngine::kSerial) continue;
    for (const std::int64_t concurrency : crew_bench::fetch_many_concurrency()) {
      // Processes at the lower concurrency only: 500 worker processes on this 2-CPU VM took 4.1 s
      // (ideal 0.4 s; no faster than 50 processes) and 5.4 s of CPU, mostly starting them.
      if (engine == FetchEngine::kProcess &&
          concurrency != crew_bench::fetch_many_concurrency().front()) {
        continue;
      }
      const std::string name =
          "BM_Fetch_Many/engine:" + std::string(crew::workloads::fetch_engine_name(engine)) +
          "/concurrency:" + std::to_string(concurrency);
      const Scenario scenario{.engine = engine,
                              .workers = static_cast<std::size_t>(concurrency),
                              .urls = crew_bench::fetch_many_urls(),
                              .latency_ms = crew_bench::fetch_many_latency_ms(),
                              .body_bytes = crew_bench::kFetchManyBodyBytes,
                              .many = true};
      benchmark::RegisterBenchmark(
          name.c_str(), [scenario](benchmark::State& state) { run_fetch(state, scenario); })
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime();
    }
  }
  return true;
}();

}  // namespace
