// The samplers of `crew bench` (and `crew demo`'s repeated runs): one run of one job on one engine
// and worker count, measured.
#include "bench_samplers.hpp"

#include <fmt/format.h>
#include <time.h>
#include <crew/errors.hpp>
#include <crew/process_pool.hpp>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "primes_command.hpp"
#include "progress_bar.hpp"

namespace crew::cli {
namespace {

// Peak memory of a run: this process's block peak, plus each worker process's own peak.
std::uint64_t peak_memory(const Timing& timing, const std::optional<ProcessPoolStats>& stats) {
  std::uint64_t bytes = timing.peak_rss_bytes;
  if (stats) {
    for (const WorkerRecord& worker : stats->workers) {
      bytes += static_cast<std::uint64_t>(std::max(0L, worker.peak_rss_kib)) * 1024;
    }
  }
  return bytes;
}

sweep::Sample to_sample(const Timing& timing, const std::optional<ProcessPoolStats>& stats) {
  return {.wall_s = std::chrono::duration<double>(timing.wall).count(),
          .cpu_s = std::chrono::duration<double>(timing.cpu()).count(),
          .peak_rss_bytes = peak_memory(timing, stats)};
}

Engine primes_engine(std::string_view engine) {
  if (engine == "thread") return Engine::kThread;
  if (engine == "process") return Engine::kProcess;
  return Engine::kSerial;
}

std::int64_t thread_cpu_ns() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

std::int64_t run_synthetic_task(SyntheticTask task) {
  if (task.cpu_ns > 0) {
    const std::int64_t until = thread_cpu_ns() + task.cpu_ns;
    volatile std::uint64_t sink = 0;
    do {
      for (int i = 0; i < 256; ++i) sink = sink + static_cast<std::uint64_t>(i);
    } while (thread_cpu_ns() < until);
  }
  if (task.io_ns > 0) {
    timespec pause{.tv_sec = static_cast<time_t>(task.io_ns / 1'000'000'000),
                   .tv_nsec = static_cast<long>(task.io_ns % 1'000'000'000)};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
  }
  return 1;
}

}  // namespace

sweep::Sampler primes_sampler(std::int64_t below, std::stop_token stop,
                              std::optional<std::int64_t>& answer) {
  return [below, stop, &answer](const std::string& engine,
                                std::size_t workers) -> std::optional<sweep::Sample> {
    PrimesJob job{.below = below,
                  .engine = primes_engine(engine),
                  .workers = workers,
                  .workers_reason = "crew bench",
                  .chunksize = std::nullopt,
                  .task_timeout = std::nullopt,
                  .max_tasks_per_child = std::nullopt};
    ProgressBar quiet(false, "numbers");
    const PrimesResult result = run_primes(job, stop, quiet);
    if (result.interrupted) return std::nullopt;
    if (!answer) answer = result.sum;
    if (result.sum != *answer) {
      throw std::runtime_error(fmt::format("wrong answer: {} with {} workers summed {}, serial {}",
                                           engine, workers, result.sum, *answer));
    }
    return to_sample(result.timing, result.process_stats);
  };
}

sweep::Sampler fetch_sampler(const std::vector<std::string>& urls, std::stop_token stop) {
  return [&urls, stop](const std::string& engine,
                       std::size_t workers) -> std::optional<sweep::Sample> {
    const workloads::FetchEngine fetch_engine =
        workloads::parse_fetch_engine(engine).value_or(workloads::FetchEngine::kSerial);
    const Stopwatch watch;
    const workloads::FetchRun run =
        workloads::fetch_urls(urls, fetch_engine, workers, {}, {.stop = stop});
    const Timing timing = watch.elapsed();
    // A stop may also show as failed transfers (cut short mid-response): it is still a stop.
    if (run.stopped || stop.stop_requested()) return std::nullopt;
    for (const workloads::FetchResult& result : run.results) {
      if (!result.ok()) {
        throw std::runtime_error(fmt::format("{} with {} workers: {} failed: {}", engine, workers,
                                             result.url, result.error));
      }
    }
    return to_sample(timing, run.process_stats);
  };
}

sweep::Sampler synthetic_sampler(const std::vector<SyntheticTask>& tasks, std::stop_token stop) {
  return [&tasks, stop](const std::string& engine,
                        std::size_t workers) -> std::optional<sweep::Sample> {
    const auto fn = [](SyntheticTask task) { return run_synthetic_task(task); };
    const MapOptions options{.stop = stop};
    std::int64_t done = 0;
    std::optional<ProcessPoolStats> stats;
    const Stopwatch watch;
    try {
      if (engine == "serial") {
        for (const SyntheticTask& task : tasks) {
          if (stop.stop_requested()) return std::nullopt;
          done += run_synthetic_task(task);
        }
      } else if (engine == "thread") {
        ThreadPool pool({.workers = workers});
        for (const std::int64_t one : pool.map(fn, tasks, options)) done += one;
      } else {
        ProcessPool pool({.workers = workers, .warn_if_threads_running = false});
        for (const std::int64_t one : pool.map(fn, tasks, options)) done += one;
        (void)pool.shutdown();
        stats = pool.stats();
      }
    } catch (const Cancelled&) {
      if (stop.stop_requested()) return std::nullopt;
      throw;
    }
    const Timing timing = watch.elapsed();
    if (done != static_cast<std::int64_t>(tasks.size())) {
      throw std::runtime_error(fmt::format("{} with {} workers ran {} of {} tasks", engine, workers,
                                           done, tasks.size()));
    }
    return to_sample(timing, stats);
  };
}

}  // namespace crew::cli
