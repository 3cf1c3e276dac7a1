// fetch_urls: crew fetch's engines (serial, thread, process, event-loop) over Fetcher and the
// event loop.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <utility>

#include "crew/errors.hpp"
#include "crew/process_pool.hpp"
#include "crew/thread_pool.hpp"
#include "crew/workloads/fetch.hpp"
#include "workloads/fetch_transfer.hpp"

namespace crew::workloads {
namespace {

constexpr std::size_t kMaxFetchWorkers = 4096;

}  // namespace

std::string_view fetch_engine_name(FetchEngine engine) noexcept {
  switch (engine) {
    case FetchEngine::kSerial:
      return "serial";
    case FetchEngine::kThread:
      return "thread";
    case FetchEngine::kProcess:
      return "process";
    case FetchEngine::kEventLoop:
      return "event-loop";
  }
  return "unknown";
}

std::optional<FetchEngine> parse_fetch_engine(std::string_view name) noexcept {
  if (name == "serial") return FetchEngine::kSerial;
  if (name == "thread") return FetchEngine::kThread;
  if (name == "process") return FetchEngine::kProcess;
  if (name == "event-loop" || name == "event_loop" || name == "eventloop") {
    return FetchEngine::kEventLoop;
  }
  return std::nullopt;
}

namespace {

// What a worker process is sent: the URL and the options, so its Fetcher matches the run's.
struct FetchTask {
  std::string url;
  std::int64_t connect_timeout_ms = 0;
  std::int64_t timeout_ms = 0;
  int retries = 0;
  std::int64_t retry_backoff_ms = 0;
  bool keep_body = false;
  int max_redirects = 0;
  std::uint64_t max_filesize = 0;
  std::uint64_t low_speed_limit = 0;
  std::int64_t low_speed_time_s = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(url, connect_timeout_ms, timeout_ms, retries, retry_backoff_ms, keep_body,
            max_redirects, max_filesize, low_speed_limit, low_speed_time_s);
  }

  [[nodiscard]] FetchOptions options() const {
    return {.connect_timeout = std::chrono::milliseconds(connect_timeout_ms),
            .timeout = std::chrono::milliseconds(timeout_ms),
            .retries = retries,
            .retry_backoff = std::chrono::milliseconds(retry_backoff_ms),
            .keep_body = keep_body,
            .max_redirects = max_redirects,
            .max_filesize = max_filesize,
            .low_speed_limit = low_speed_limit,
            .low_speed_time = std::chrono::seconds(low_speed_time_s)};
  }
};

// The Fetcher of one thread. A worker process is forked from a thread of the host, so it may
// inherit a copy of that thread's Fetcher whose sockets are not its own (they were closed at the
// fork, and the numbers may now be other descriptors): such a copy is abandoned, never cleaned up.
class ThreadFetcher {
 public:
  ThreadFetcher() = default;
  ThreadFetcher(const ThreadFetcher&) = delete;
  ThreadFetcher& operator=(const ThreadFetcher&) = delete;
  ~ThreadFetcher() { abandon_if_inherited(); }

  Fetcher& get(const FetchOptions& options) {
    abandon_if_inherited();
    if (!fetcher_) {
      fetcher_ = std::make_unique<Fetcher>(options);
      owner_ = getpid();
    } else if (!(fetcher_->options() == options)) {
      fetcher_->set_options(options);
    }
    return *fetcher_;
  }

 private:
  void abandon_if_inherited() noexcept {
    if (fetcher_ && owner_ != getpid()) (void)fetcher_.release();
  }

  std::unique_ptr<Fetcher> fetcher_;
  pid_t owner_ = 0;
};

// The Fetcher of the calling thread (a pool's worker thread, or a worker process's only thread),
// made on first use and kept, so its connections stay alive from one URL to the next.
FetchResult fetch_on_this_thread(std::string_view url, const FetchOptions& options,
                                 std::stop_token stop = {}) {
  thread_local ThreadFetcher fetcher;
  try {
    return fetcher.get(options).fetch(url, stop);
  } catch (const std::exception& error) {
    // Only set-up failures and bad_alloc reach here: still one result for this URL.
    FetchResult result;
    result.url = std::string(url);
    result.error = fmt::format("could not fetch: {}", error.what());
    return result;
  }
}

// Runs a pool's imap over the URLs [next, end), one URL per chunk, storing results in order. A
// worker that dies mid-URL fails that URL and the imap starts again after it.
template <class Pool, class Items, class Fn>
void run_on_pool(Pool& pool, const Items& items, Fn fn, const FetchControl& control,
                 FetchRun& run) {
  const std::size_t total = items.size();
  std::size_t next = 0;
  while (next < total) {
    const std::size_t offset = next;
    MapOptions map_options{.chunksize = 1, .stop = control.stop};
    if (control.on_progress) {
      map_options.on_progress = [&control, offset, total](std::size_t done, std::size_t) {
        control.on_progress(offset + done, total);
      };
    }
    try {
      const auto rest = std::span(items).subspan(offset);
      for (FetchResult& result : pool.imap(fn, rest, map_options)) {
        run.results[next++] = std::move(result);
      }
    } catch (const Cancelled&) {
      if (!control.stop.stop_requested()) throw;
      run.stopped = true;
      return;
    } catch (const WorkerCrashed& crash) {
      run.results[next].error = fmt::format("worker crashed: {}", crash.what());
      run.results[next].attempts = 1;
      ++next;
    }
  }
}

}  // namespace

FetchRun fetch_urls(std::span<const std::string> urls, FetchEngine engine, std::size_t workers,
                    const FetchOptions& options, const FetchControl& control) {
  if (workers == 0 || workers > kMaxFetchWorkers) {
    throw std::invalid_argument(
        fmt::format("workers must be between 1 and {}, got {}", kMaxFetchWorkers, workers));
  }
  validate(options);
  FetchRun run;
  run.results.resize(urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) run.results[i].url = urls[i];
  if (urls.empty()) return run;
  // No pool needs more workers than there are URLs.
  const std::size_t busy = std::min(workers, urls.size());

  switch (engine) {
    case FetchEngine::kSerial: {
      Fetcher fetcher(options);
      for (std::size_t i = 0; i < urls.size(); ++i) {
        if (control.stop.stop_requested()) {
          run.stopped = true;
          break;
        }
        run.results[i] = fetcher.fetch(urls[i], control.stop);
        if (control.on_progress) control.on_progress(i + 1, urls.size());
      }
      break;
    }
    case FetchEngine::kThread: {
      if (busy > ThreadPool::kMaxWorkers) throw std::invalid_argument("workers: too many threads");
      ThreadPool pool({.workers = busy});
      const std::stop_token stop = control.stop;
      run_on_pool(
          pool, urls,
          [&options, stop](const std::string& url) {
            return fetch_on_this_thread(url, options, stop);
          },
          control, run);
      break;
    }
    case FetchEngine::kProcess: {
      if (busy > ProcessPool::kMaxWorkers) {
        throw std::invalid_argument(
            fmt::format("workers must be at most {} for the process engine, got {}",
                        ProcessPool::kMaxWorkers, workers));
      }
      std::vector<FetchTask> tasks;
      tasks.reserve(urls.size());
      for (const std::string& url : urls) {
        tasks.push_back({.url = url,
                         .connect_timeout_ms = options.connect_timeout.count(),
                         .timeout_ms = options.timeout.count(),
                         .retries = options.retries,
                         .retry_backoff_ms = options.retry_backoff.count(),
                         .keep_body = options.keep_body,
                         .max_redirects = options.max_redirects,
                         .max_filesize = options.max_filesize,
                         .low_speed_limit = options.low_speed_limit,
                         .low_speed_time_s = options.low_speed_time.count()});
      }
      // Initialized here, before the pool forks its zygote, so that every worker inherits a ready
      // libcurl (and OpenSSL) instead of paying for the set-up on its first URL.
      detail::ensure_curl_initialized();
      // The callers of this engine (the crew command, tests) run other threads that hold no lock
      // a worker needs; the warning would only be noise.
      ProcessPool pool({.workers = busy, .warn_if_threads_running = false});
      run_on_pool(
          pool, tasks,
          [](const FetchTask& task) { return fetch_on_this_thread(task.url, task.options()); },
          control, run);
      (void)pool.shutdown();
      run.process_stats = pool.stats();
      break;
    }
    case FetchEngine::kEventLoop:
      run.results = fetch_with_event_loop(urls, workers, options, control, &run.event_loop);
      break;
  }
  // A stop may also end transfers that were running (their results say so) without any pool
  // seeing a cancelled chunk.
  if (control.stop.stop_requested() &&
      std::any_of(run.results.begin(), run.results.end(),
                  [](const FetchResult& r) { return r.error == kNotFetchedStopped; })) {
    run.stopped = true;
  }

  for (FetchResult& result : run.results) {
    if (result.attempts == 0 && result.error.empty()) {
      // Never started: a stop came first.
      result.error = std::string(kNotFetchedStopped);
      run.stopped = true;
    }
  }
  return run;
}

}  // namespace crew::workloads
