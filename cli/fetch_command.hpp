// `crew fetch`: the article's IO job (fetch many URLs) on one engine, one result per URL, timed
// like %%time. Also the runner that `crew demo` reuses for its IO part.
#pragma once

#include <CLI/CLI.hpp>
#include <crew/latency_server.hpp>
#include <crew/timing.hpp>
#include <crew/workloads/fetch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "interrupt.hpp"
#include "progress_bar.hpp"

namespace crew::cli {

// --local N: an in-process crew::LatencyServer and N of its URLs.
struct LocalServerSpec {
  std::size_t count = 13;
  std::chrono::milliseconds latency{200};
  std::uint64_t body_bytes = 50 * 1024;
};

// A validated fetch job. `urls` is empty for a --local job until its server has started.
struct FetchJob {
  std::vector<std::string> urls;
  std::optional<LocalServerSpec> local;
  workloads::FetchEngine engine = workloads::FetchEngine::kThread;
  std::size_t workers = 1;
  // Why this many: "--workers", Python's ThreadPoolExecutor default, or what the serial engine
  // does instead; a clamp to the open-file limit is added here.
  std::string workers_reason;
  workloads::FetchOptions options;
  // Set when --workers was lowered to fit RLIMIT_NOFILE: the warning printed on stderr.
  std::string fd_warning;
};

struct FetchOutcome {
  workloads::FetchRun run;
  Timing timing;  // the whole run: pool start and shutdown included, the local server's start not
  std::size_t ok = 0;
  std::size_t failed = 0;       // fetched, with an error
  std::size_t not_fetched = 0;  // "not fetched: stopped" (an interrupted run)
  std::uint64_t bytes = 0;      // of the fetched URLs' bodies
  bool interrupted = false;
};

// Runs the job's URLs on its engine, reporting progress to `progress`. When `stop` fires, the run
// ends within about 100 ms (the process engine kills its busy workers) and the URLs not done
// say so. Blocks: for the run. Throws: std::system_error when threads or processes cannot be
// started; std::runtime_error from libcurl's set-up. Thread safety: safe.
[[nodiscard]] FetchOutcome run_fetch(const FetchJob& job, std::stop_token stop,
                                     ProgressBar& progress);

// "engine: thread, workers: 4 (--workers), connect timeout: 10 s, timeout: 30 s, retries: 0" —
// one line, no newline.
[[nodiscard]] std::string describe_fetch_job(const FetchJob& job);

// "13 URLs: 13 ok, 0 failed; 650 KiB in 0.81 s (16.0 URLs/s)" — one line, no newline. After a
// stop: "40 URLs (14 fetched): …", the rate counting only the URLs fetched.
[[nodiscard]] std::string describe_fetch_outcome(const FetchJob& job, const FetchOutcome& outcome);

// The command line of `crew fetch`, as typed (validated by resolve_fetch_args).
struct FetchArgs {
  std::vector<std::string> urls;
  std::string urls_file;  // "-" = stdin
  std::string local;      // empty: no local server
  std::string latency = "200ms";
  std::string body = "50KiB";
  std::string engine = "thread";
  std::string workers;  // empty: the engine's default
  std::string connect_timeout = "10s";
  std::string timeout = "30s";
  std::string retries = "0";
  std::string max_redirs = "10";
  std::string max_filesize;  // empty: no limit
  std::string speed_limit;   // empty (with speed_time empty): no low-speed abort
  std::string speed_time;
  bool json = false;
  bool failures_only = false;
};

// Registers `crew fetch` on `app`, writing what it parses into `args` (which must outlive app).
CLI::App* add_fetch_command(CLI::App& app, FetchArgs& args);

// The longest line a URL file may have (a URL and its blanks; its "\n" or "\r\n" not counted):
// far beyond any URL a server accepts (8 KiB is common), and what bounds the memory of reading a
// file that has no newline.
inline constexpr std::size_t kMaxUrlLineBytes = 64 * 1024;

// The most URLs one run fetches (--local's bound too): every URL keeps a result in memory, about
// 250 bytes each, so an endless stdin (`yes URL | crew fetch`) is a usage error here, not a
// machine out of memory.
inline constexpr std::size_t kMaxUrls = 1'000'000;

// Validates the arguments into a job, reading --urls-file or stdin. Throws: UsageError naming the
// option (or the file and line of a bad URL, or of a line over kMaxUrlLineBytes).
[[nodiscard]] FetchJob resolve_fetch_args(const FetchArgs& args, std::stop_token stop = {});

// Runs `crew fetch`; returns the exit code: 0 when every URL succeeded, 1 when some failed,
// 128 + signal when interrupted. Throws: UsageError; whatever run_fetch throws.
[[nodiscard]] int run_fetch_command(const FetchArgs& args, const InterruptWatcher& interrupt);

// Python's ThreadPoolExecutor default for IO-bound work: min(32, CPUs + 4), with its reason.
[[nodiscard]] std::pair<std::size_t, std::string> default_fetch_workers();

}  // namespace crew::cli
