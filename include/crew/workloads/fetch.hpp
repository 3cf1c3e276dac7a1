// The article's IO-bound job: fetch many URLs over HTTP(S) with libcurl, one result per URL.
//
// Two ways to fetch, which crew's engines build on:
//   * Fetcher — one reused curl easy handle: blocking, keep-alive across calls. One per thread (the
//     thread engine keeps one per worker thread, the process engine one per worker process); the
//     way the article's ThreadPoolExecutor fetches, minus the GIL.
//   * fetch_with_event_loop — one curl multi handle driven by epoll on the calling thread, many
//     transfers in flight at once; the way neither Python nor the article shows.
// Loopback (localhost, 127.0.0.0/8, ::1, ::ffff:127.x.x.x) never goes through a proxy from the
// environment; other hosts follow http_proxy / no_proxy as curl does.
// Both turn every failure of a URL (refused, reset, timeout, TLS, name resolution, HTTP ≥ 400) into
// that URL's FetchResult: a failed URL never throws and never makes another URL's result go
// missing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "crew/process_stats.hpp"

namespace crew::workloads {

struct FetchOptions {
  // Time to set up a connection (TCP, then TLS for https). Must be > 0.
  std::chrono::milliseconds connect_timeout{10'000};
  // Time for one whole attempt, connection included; a stalled body ends here. Must be > 0, so no
  // request can hang forever.
  std::chrono::milliseconds timeout{30'000};
  // Further attempts after a transient failure: a timeout, a refused or reset connection, an
  // empty or cut-short reply, or HTTP 408, 429, 500, 502, 503, 504 (curl --retry's list, plus
  // connection errors). 0 … 10.
  int retries = 0;
  // The wait before the first retry; each further retry waits twice as long as the one before.
  std::chrono::milliseconds retry_backoff{100};
  // Keep the body in FetchResult::body (tests and the example check it); else bodies are counted
  // and dropped, so memory stays flat however large they are.
  bool keep_body = false;
  // Redirects followed (http and https only), 0 … 50 (curl's --max-redirs). 0: none; a 3xx is
  // then the result. One more fails the URL ("Number of redirects hit maximum amount …").
  int max_redirects = 10;
  // The most body bytes a response may have; 0: no limit. A larger one fails its URL: at once
  // when its Content-Length says so, else as soon as the body passes the limit, so an endless
  // body ends here and not at the timeout (curl's --max-filesize).
  std::uint64_t max_filesize = 0;
  // An attempt whose speed stays under low_speed_limit bytes/s for low_speed_time fails ("too
  // slow: …"; curl's --speed-limit and --speed-time). Both 0 (off) or both > 0; time ≤ 3600 s.
  std::uint64_t low_speed_limit = 0;
  std::chrono::seconds low_speed_time{0};

  friend bool operator==(const FetchOptions&, const FetchOptions&) = default;
};

// Throws std::invalid_argument naming the field when `options` is out of range.
void validate(const FetchOptions& options);

struct FetchResult {
  std::string url;
  // The status of the last final response (after redirects): 200 … 599; 0 when none arrived
  // (an interim "100 Continue" is never a status).
  long status = 0;
  // The URL that gave that response: `url` itself, or where redirects led. Empty when no request
  // was made.
  std::string effective_url;
  // Redirects followed to get there.
  int redirects = 0;
  // Body bytes received in the last attempt (after content decoding).
  std::uint64_t bytes = 0;
  // Wall time from the first attempt's start to the last one's end, backoff waits included.
  double seconds = 0;
  // Empty when the URL succeeded (a final response with status < 400 that is not a redirect left
  // unfollowed). Else what failed, in words: "Couldn't connect to server: Failed to connect to
  // 127.0.0.1 port 9 …", "HTTP 404", "timeout after 2000 ms: …", "too large: …", "too slow: …",
  // "HTTP 302 redirect with no Location to follow", "not fetched: stopped".
  std::string error;
  // Attempts made: 1 + retries used (0 when the URL was never tried).
  int attempts = 0;
  // The body, when FetchOptions::keep_body.
  std::string body;

  [[nodiscard]] bool ok() const noexcept { return error.empty(); }

  // For crew::ProcessPool (cereal).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(url, status, effective_url, redirects, bytes, seconds, error, attempts, body);
  }
};

// Empty when `url` is an http:// or https:// URL with a host; else why not, as one sentence that
// quotes the URL ("only http:// and https:// URLs can be fetched, got \"file:///etc/passwd\"").
// Checked before any engine starts, so a bad URL is a usage error, not a run. Thread safety: safe.
[[nodiscard]] std::string check_fetch_url(std::string_view url);

// One curl easy handle, reused: connections are kept alive between fetches to the same host.
// Not thread-safe: one Fetcher per thread (it may move between threads between calls).
class Fetcher {
 public:
  // Throws: std::invalid_argument (validate), std::runtime_error when libcurl cannot make a handle.
  explicit Fetcher(FetchOptions options = {});
  ~Fetcher();
  Fetcher(Fetcher&&) noexcept;
  Fetcher& operator=(Fetcher&&) noexcept;

  // Fetches `url`, retrying transient failures as the options say. When `stop` is requested the
  // transfer is abandoned within about 100 ms (error "not fetched: stopped"). Blocks: up to
  // (retries + 1) × timeout plus the backoff waits. Throws: std::bad_alloc only.
  [[nodiscard]] FetchResult fetch(std::string_view url, std::stop_token stop = {});

  [[nodiscard]] const FetchOptions& options() const noexcept;
  // Throws: std::invalid_argument (validate).
  void set_options(const FetchOptions& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What a caller can do to a run while it goes.
struct FetchControl {
  // Called after each URL's result is final (or, for the pool engines, after each chunk), with
  // (done, total); never concurrently with itself, `done` non-decreasing.
  std::function<void(std::size_t done, std::size_t total)> on_progress = {};
  // When stop is requested, transfers in flight are abandoned (the process engine kills its busy
  // workers) and URLs not started are not started; their results say "not fetched: stopped".
  std::stop_token stop = {};
};

// The error text of a URL that a stop left unfetched.
inline constexpr std::string_view kNotFetchedStopped = "not fetched: stopped";

// What an event loop did, beyond the results.
struct EventLoopStats {
  std::size_t connections_opened = 0;  // new TCP connections (fewer than URLs: keep-alive reuse)
  std::size_t peak_in_flight = 0;      // most transfers running at once
};

// Fetches every URL with one curl multi handle, at most `concurrency` transfers at once, and
// returns one result per URL in input order. Each transfer retries and times out as a Fetcher's
// would. Blocks: until every URL has a result or the stop is seen. Throws: std::invalid_argument
// (concurrency 0, validate), std::runtime_error when libcurl or epoll cannot start,
// std::bad_alloc. Thread safety: safe; each call has its own multi handle.
[[nodiscard]] std::vector<FetchResult> fetch_with_event_loop(std::span<const std::string> urls,
                                                             std::size_t concurrency,
                                                             const FetchOptions& options,
                                                             const FetchControl& control = {},
                                                             EventLoopStats* stats = nullptr);

// crew fetch's engines; all keep at most `workers` transfers in flight.
//   serial      one Fetcher on the calling thread (the article's first loop; workers ignored)
//   thread      crew::ThreadPool, one Fetcher per worker thread (the article's ThreadPoolExecutor)
//   process     crew::ProcessPool, one Fetcher per worker process
//   event-loop  fetch_with_event_loop on the calling thread, concurrency = workers
enum class FetchEngine { kSerial, kThread, kProcess, kEventLoop };

[[nodiscard]] std::string_view fetch_engine_name(FetchEngine engine) noexcept;
// "serial", "thread", "process", "event-loop" (also "event_loop", "eventloop"); nullopt otherwise.
[[nodiscard]] std::optional<FetchEngine> parse_fetch_engine(std::string_view name) noexcept;

struct FetchRun {
  std::vector<FetchResult> results;  // one per URL, in input order, always all of them
  bool stopped = false;              // the control's stop was seen before every URL was done
  EventLoopStats event_loop;         // event-loop engine only
  // Process engine only: what the pool measured, after its workers were reaped.
  std::optional<ProcessPoolStats> process_stats;
};

// Fetches every URL on `engine` with at most `workers` at once (1 … 4096; the pool engines also
// cap at their pool's kMaxWorkers) and returns one result per URL in input order. A worker process
// that dies mid-URL fails that URL ("worker crashed: …") and the run goes on. Pools are started
// and shut down inside the call. Blocks: until every URL has a result or the stop is seen.
// Throws: std::invalid_argument (workers, validate), std::system_error when threads or processes
// cannot be started, std::runtime_error from libcurl set-up, std::bad_alloc.
[[nodiscard]] FetchRun fetch_urls(std::span<const std::string> urls, FetchEngine engine,
                                  std::size_t workers, const FetchOptions& options,
                                  const FetchControl& control = {});

// The open-file limit, as fetching `concurrency` URLs at once needs it: each transfer holds
// descriptors (fds_per_transfer), and the process has other descriptors too (kFdReserve of them
// are kept free).
struct FdBudget {
  std::size_t concurrency = 0;  // what may run: the request, or less when the limit is too low
  bool raised = false;          // the soft limit was raised (towards the hard limit)
  std::string warning;          // non-empty when concurrency was clamped: says from what, and why
};
inline constexpr std::size_t kFdReserve = 64;

// Raises RLIMIT_NOFILE's soft limit (never above the hard limit) when `concurrency` transfers of
// `fds_each` descriptors would not fit, and clamps the concurrency when even the hard limit is too
// low. Throws: nothing. Thread safety: changes a process-wide limit; call before starting workers.
[[nodiscard]] FdBudget reserve_file_descriptors(std::size_t concurrency,
                                                std::size_t fds_each = 1) noexcept;

// What one transfer in flight holds in this process, per engine: event-loop 1 (its socket),
// thread 3 (its socket and its Fetcher's wake-up socket pair), process 2 (the worker's socket and
// pidfd; the worker holds its own), serial 3.
[[nodiscard]] std::size_t fds_per_transfer(FetchEngine engine) noexcept;

// The paths of the article's 13 URLs (python.org and docs.python.org), for local runs:
// "/", "/3/", "/3/whatsnew/3.7.html", …, "/3/faq/index.html".
[[nodiscard]] std::span<const std::string_view> article_url_paths() noexcept;

// `count` URLs on http://127.0.0.1:<port>: the article's 13 paths first, then "/page/14", …
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] std::vector<std::string> local_urls(std::uint16_t port, std::size_t count,
                                                  std::string_view host = "127.0.0.1");

}  // namespace crew::workloads
