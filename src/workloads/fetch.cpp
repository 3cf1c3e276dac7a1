// The article's IO job with libcurl: a reused easy handle per thread (Fetcher), one multi handle
// driven by epoll (fetch_with_event_loop), and the engines of `crew fetch` on top (fetch_urls).
#include "crew/workloads/fetch.hpp"

#include <curl/curl.h>
#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "crew/errors.hpp"
#include "crew/process_pool.hpp"
#include "crew/thread_pool.hpp"
#include "crew/version.hpp"

namespace crew::workloads {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxRetries = 10;
constexpr std::size_t kMaxFetchWorkers = 4096;
// How often a run that can be stopped looks at its stop token while it waits.
constexpr std::chrono::milliseconds kStopPoll{50};
// Transfers the event loop starts per turn (see EventLoop::start_what_may_start).
constexpr std::size_t kStartBatch = 32;

void ensure_curl_initialized() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) {
    throw std::runtime_error(
        fmt::format("libcurl could not be initialized: {}", curl_easy_strerror(code)));
  }
}

// One transfer's state, shared by the easy-handle callbacks.
struct Transfer {
  std::uint64_t bytes = 0;
  std::string body;
  bool keep_body = false;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};

  void reset() {
    bytes = 0;
    body.clear();
    error_buffer[0] = '\0';
  }
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  transfer->bytes += n;
  if (transfer->keep_body) transfer->body.append(data, n);
  return n;
}

// Options that every transfer of crew gets, whatever the URL.
void configure(CURL* easy, const FetchOptions& options, Transfer& transfer) {
  static const std::string user_agent = std::string("crew/") + CREW_VERSION_STRING;
  transfer.keep_body = options.keep_body;
  // Threads and signals do not mix: no SIGALRM for timeouts (the resolver is threaded anyway).
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error_buffer.data());
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, options.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  // A redirect must not lead to file:// or anything else check_fetch_url refuses.
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Loopback never goes through a proxy from the environment (tests and benchmarks must stay on
  // this machine); other hosts follow http_proxy / no_proxy as curl does.
  curl_easy_setopt(easy, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent.c_str());
}

bool is_transient(CURLcode code, long status) {
  switch (code) {
    case CURLE_OK:
      return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
             status == 504;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return true;
    default:
      return false;
  }
}

// The error text of an attempt that ended with `code` and `status`; empty for a success.
std::string describe_failure(CURLcode code, long status, const Transfer& transfer,
                             const FetchOptions& options) {
  if (code == CURLE_OK) return status >= 400 ? fmt::format("HTTP {}", status) : std::string();
  if (code == CURLE_ABORTED_BY_CALLBACK) return std::string(kNotFetchedStopped);
  const std::string_view detail(transfer.error_buffer.data());
  std::string text = curl_easy_strerror(code);
  if (!detail.empty()) text = fmt::format("{}: {}", text, detail);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return fmt::format("timeout after {} ms: {}", options.timeout.count(), text);
  }
  return text;
}

// Sleeps for `duration` unless `stop` is requested first. Returns false when stopped.
bool sleep_unless_stopped(std::chrono::milliseconds duration, std::stop_token stop) {
  std::mutex mu;
  std::condition_variable_any wake;
  std::unique_lock lock(mu);
  wake.wait_for(lock, stop, duration, [] { return false; });
  return !stop.stop_requested();
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

// --- options and URLs ----------------------------------------------------------------------------

void validate(const FetchOptions& options) {
  if (options.connect_timeout.count() <= 0) {
    throw std::invalid_argument("connect_timeout must be more than 0 ms");
  }
  if (options.timeout.count() <= 0) throw std::invalid_argument("timeout must be more than 0 ms");
  if (options.retries < 0 || options.retries > kMaxRetries) {
    throw std::invalid_argument(
        fmt::format("retries must be between 0 and {}, got {}", kMaxRetries, options.retries));
  }
  if (options.retry_backoff.count() < 0 || options.retry_backoff > std::chrono::minutes(1)) {
    throw std::invalid_argument("retry_backoff must be between 0 and 60 s");
  }
  if (options.max_redirects < 0 || options.max_redirects > 50) {
    throw std::invalid_argument("max_redirects must be between 0 and 50");
  }
}

std::string check_fetch_url(std::string_view url) {
  if (url.empty()) return "an empty URL (\"\") cannot be fetched";
  CURLU* handle = curl_url();
  if (handle == nullptr) throw std::bad_alloc();
  const std::string text(url);
  std::string problem;
  const CURLUcode code =
      curl_url_set(handle, CURLUPART_URL, text.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) {
    problem =
        code == CURLUE_BAD_SCHEME || text.find("://") == std::string::npos
            ? fmt::format("not a URL: expected http://HOST/… or https://HOST/…, got \"{}\"", url)
            : fmt::format("not a valid URL ({}): \"{}\"", curl_url_strerror(code), url);
  } else {
    char* scheme = nullptr;
    curl_url_get(handle, CURLUPART_SCHEME, &scheme, 0);
    const std::string_view name = scheme == nullptr ? "" : scheme;
    if (name != "http" && name != "https") {
      problem = fmt::format("only http:// and https:// URLs can be fetched, got \"{}\"", url);
    }
    curl_free(scheme);
  }
  curl_url_cleanup(handle);
  return problem;
}

std::span<const std::string_view> article_url_paths() noexcept {
  // The article's 13 URLs: www.python.org and 12 pages of docs.python.org.
  static constexpr std::array<std::string_view, 13> kPaths = {
      "/",
      "/3/",
      "/3/whatsnew/3.7.html",
      "/3/tutorial/index.html",
      "/3/library/index.html",
      "/3/reference/index.html",
      "/3/using/index.html",
      "/3/howto/index.html",
      "/3/installing/index.html",
      "/3/distributing/index.html",
      "/3/extending/index.html",
      "/3/c-api/index.html",
      "/3/faq/index.html",
  };
  return kPaths;
}

std::vector<std::string> local_urls(std::uint16_t port, std::size_t count, std::string_view host) {
  const bool ipv6 = host.find(':') != std::string_view::npos;
  const std::string origin =
      ipv6 ? fmt::format("http://[{}]:{}", host, port) : fmt::format("http://{}:{}", host, port);
  const auto paths = article_url_paths();
  std::vector<std::string> urls;
  urls.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    urls.push_back(i < paths.size() ? origin + std::string(paths[i])
                                    : fmt::format("{}/page/{}", origin, i + 1));
  }
  return urls;
}

// --- Fetcher
// ---------------------------------------------------------------------------------------

struct Fetcher::Impl {
  CURL* easy = nullptr;
  // A private multi handle runs the easy one, so that a stop can wake its wait at once
  // (curl_multi_wakeup) where curl_easy_perform would notice only at its next progress call, up to
  // a second later. It also holds the connection cache that keeps connections alive between calls.
  CURLM* multi = nullptr;
  FetchOptions options;
  Transfer transfer;

  ~Impl() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  // One attempt: runs the transfer to its end, or until `stop` (then CURLE_ABORTED_BY_CALLBACK).
  CURLcode perform(std::stop_token stop) {
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) return CURLE_FAILED_INIT;
    CURLcode result = CURLE_ABORTED_BY_CALLBACK;
    {
      std::stop_callback wake(stop, [this] { curl_multi_wakeup(multi); });
      for (bool done = false; !done;) {
        int running = 0;
        curl_multi_perform(multi, &running);
        int left = 0;
        while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
          if (message->msg == CURLMSG_DONE) {
            result = message->data.result;
            done = true;
          }
        }
        if (done || stop.stop_requested()) break;
        curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
      }
    }
    // A transfer removed before its end loses its connection; a finished one keeps it cached.
    curl_multi_remove_handle(multi, easy);
    return result;
  }
};

Fetcher::Fetcher(FetchOptions options) : impl_(std::make_unique<Impl>()) {
  validate(options);
  ensure_curl_initialized();
  impl_->easy = curl_easy_init();
  impl_->multi = curl_multi_init();
  if (impl_->easy == nullptr || impl_->multi == nullptr) {
    throw std::runtime_error("libcurl could not make a handle");
  }
  impl_->options = options;
  configure(impl_->easy, options, impl_->transfer);
}

Fetcher::~Fetcher() = default;
Fetcher::Fetcher(Fetcher&&) noexcept = default;
Fetcher& Fetcher::operator=(Fetcher&&) noexcept = default;

const FetchOptions& Fetcher::options() const noexcept { return impl_->options; }

void Fetcher::set_options(const FetchOptions& options) {
  validate(options);
  impl_->options = options;
  configure(impl_->easy, options, impl_->transfer);
}

FetchResult Fetcher::fetch(std::string_view url, std::stop_token stop) {
  Impl& impl = *impl_;
  FetchResult result;
  result.url = std::string(url);
  const Clock::time_point start = Clock::now();
  curl_easy_setopt(impl.easy, CURLOPT_URL, result.url.c_str());
  std::chrono::milliseconds backoff = impl.options.retry_backoff;
  for (int attempt = 0;; ++attempt) {
    if (stop.stop_requested()) {
      if (result.attempts == 0) result.error = std::string(kNotFetchedStopped);
      break;
    }
    impl.transfer.reset();
    const CURLcode code = impl.perform(stop);
    ++result.attempts;
    long status = 0;
    curl_easy_getinfo(impl.easy, CURLINFO_RESPONSE_CODE, &status);
    result.status = status;
    result.bytes = impl.transfer.bytes;
    result.error = describe_failure(code, status, impl.transfer, impl.options);
    if (result.ok() || attempt >= impl.options.retries || !is_transient(code, status)) break;
    if (!sleep_unless_stopped(backoff, stop)) break;
    backoff *= 2;
  }
  if (impl.options.keep_body) result.body = std::move(impl.transfer.body);
  result.seconds = seconds_since(start);
  return result;
}

// --- the event loop
// -------------------------------------------------------------------------------

namespace {

// One curl multi handle and one epoll set, driven with curl_multi_socket_action: each wake-up
// touches only the sockets that are ready, where curl_multi_perform walks every transfer (the
// plain loop, O(transfers) per wake-up, which is what costs it at hundreds in flight).
class EventLoop {
 public:
  EventLoop(std::span<const std::string> urls, std::size_t concurrency, const FetchOptions& options,
            const FetchControl& control)
      : urls_(urls),
        options_(options),
        control_(control),
        results_(urls.size()),
        slots_(std::min(concurrency, urls.size())) {
    ensure_curl_initialized();
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    multi_ = curl_multi_init();
    if (multi_ == nullptr) {
      close(epoll_fd_);
      throw std::runtime_error("libcurl could not make a multi handle");
    }
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &EventLoop::on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &EventLoop::on_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    // One cached connection per slot: a finished transfer's connection waits for the next URL.
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(slots_.size()));
    for (Slot& slot : slots_) {
      slot.easy = curl_easy_init();
      if (slot.easy == nullptr) throw std::runtime_error("libcurl could not make an easy handle");
      configure(slot.easy, options_, slot.transfer);
      curl_easy_setopt(slot.easy, CURLOPT_PRIVATE, &slot);
      curl_easy_setopt(slot.easy, CURLOPT_CLOSESOCKETFUNCTION, &EventLoop::on_close_socket);
      curl_easy_setopt(slot.easy, CURLOPT_CLOSESOCKETDATA, this);
      free_.push_back(&slot);
    }
    for (std::size_t i = 0; i < urls.size(); ++i) pending_.push_back(i);
    states_.resize(urls.size());
  }

  ~EventLoop() {
    for (Slot& slot : slots_) {
      if (slot.easy == nullptr) continue;
      if (slot.running) curl_multi_remove_handle(multi_, slot.easy);
      curl_easy_cleanup(slot.easy);
    }
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  std::vector<FetchResult> run(EventLoopStats& stats) {
    std::array<epoll_event, 256> events{};
    while (done_ < urls_.size()) {
      if (control_.stop.stop_requested()) {
        abandon_all();
        break;
      }
      start_what_may_start();
      const int wait_ms = next_wait_ms();
      const int ready =
          epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), wait_ms);
      if (ready < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "epoll_wait");
      }
      for (int i = 0; i < ready; ++i) {
        const int fd = events[i].data.fd;
        SocketState& state = socket_state(fd);
        if (!state.watched) {
          // An idle cached connection that the server closed: curl finds out when it next uses
          // it; stop hearing about it meanwhile.
          epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
          state.in_set = false;
          state.events = 0;
          continue;
        }
        int flags = 0;
        if ((events[i].events & EPOLLIN) != 0) flags |= CURL_CSELECT_IN;
        if ((events[i].events & EPOLLOUT) != 0) flags |= CURL_CSELECT_OUT;
        if ((events[i].events & (EPOLLERR | EPOLLHUP)) != 0) flags |= CURL_CSELECT_ERR;
        int running = 0;
        curl_multi_socket_action(multi_, fd, flags, &running);
      }
      if (timer_due_ && Clock::now() >= timer_deadline_) {
        timer_due_ = false;
        int running = 0;
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      collect_finished();
    }
    stats.connections_opened = connections_opened_;
    stats.peak_in_flight = peak_in_flight_;
    return std::move(results_);
  }

 private:
  struct Slot {
    CURL* easy = nullptr;
    Transfer transfer;
    std::size_t url = 0;
    bool running = false;
  };
  // Per URL: what its attempts so far have used.
  struct UrlState {
    Clock::time_point first_start{};
    int attempts = 0;
    std::chrono::milliseconds next_backoff{};
  };
  struct Retry {
    Clock::time_point due;
    std::size_t url;
    bool operator>(const Retry& other) const { return due > other.due; }
  };

  // What the epoll set holds, per descriptor, kept exact with curl's close-socket callback, so
  // that a socket costs an epoll_ctl only when the events it needs change. A connection that goes
  // back to curl's cache keeps its EPOLLIN registration (REMOVE costs nothing): an idle socket
  // has nothing to read, and if the server closes it the stray event is dropped in run(). Per
  // request on a reused connection that saves two of the three epoll_ctl calls.
  struct SocketState {
    bool in_set = false;   // registered in epoll_fd_
    bool watched = false;  // curl asked for events on it
    std::uint32_t events = 0;
  };

  SocketState& socket_state(curl_socket_t socket) {
    const auto fd = static_cast<std::size_t>(socket);
    if (fd >= sockets_.size()) sockets_.resize(fd + 1);
    return sockets_[fd];
  }

  static int on_socket(CURL*, curl_socket_t socket, int what, void* user, void*) {
    auto* self = static_cast<EventLoop*>(user);
    if (socket < 0) return 0;
    SocketState& state = self->socket_state(socket);
    std::uint32_t events = 0;
    if ((what & CURL_POLL_IN) != 0) events |= EPOLLIN;
    if ((what & CURL_POLL_OUT) != 0) events |= EPOLLOUT;
    state.watched = what != CURL_POLL_REMOVE;
    if (what == CURL_POLL_REMOVE) {
      // A writable socket would wake every wait; a readable-only one stays as it is.
      if (!state.in_set || (state.events & EPOLLOUT) == 0) return 0;
      events = 0;
    }
    if (state.in_set && state.events == events) return 0;
    epoll_event event{};
    event.data.fd = socket;
    event.events = events;
    if (epoll_ctl(self->epoll_fd_, state.in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, socket, &event) !=
        0) {
      // Not expected (the table is exact); recover rather than lose the socket.
      epoll_ctl(self->epoll_fd_, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, socket, &event);
    }
    state.in_set = true;
    state.events = events;
    return 0;
  }

  // curl closes every socket it opened through this (per connection); closing drops it from the
  // epoll set, so the table forgets it before the number can be reused.
  static int on_close_socket(void* user, curl_socket_t socket) {
    auto* self = static_cast<EventLoop*>(user);
    if (socket >= 0 && static_cast<std::size_t>(socket) < self->sockets_.size()) {
      self->sockets_[static_cast<std::size_t>(socket)] = SocketState{};
    }
    return close(socket);
  }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<EventLoop*>(user);
    self->timer_due_ = timeout_ms >= 0;
    if (timeout_ms >= 0)
      self->timer_deadline_ = Clock::now() + std::chrono::milliseconds(timeout_ms);
    return 0;
  }

  void start_what_may_start() {
    const Clock::time_point now = Clock::now();
    while (!free_.empty() && !retries_.empty() && retries_.top().due <= now) {
      const std::size_t url = retries_.top().url;
      retries_.pop();
      start(url);
    }
    // At most kStartBatch new transfers per turn of the loop: curl connects every transfer whose
    // timer has expired in one call, so 500 added at once send their first request only after all
    // 500 connections are made (tens of ms here). In batches, connecting and sending overlap:
    // the first wave's mean time per URL fell from 155 to 110 ms at 500 × 100 ms.
    std::size_t started = 0;
    while (!free_.empty() && !pending_.empty() && started++ < kStartBatch) {
      const std::size_t url = pending_.front();
      pending_.pop_front();
      start(url);
    }
  }

  void start(std::size_t url) {
    Slot* slot = free_.back();
    free_.pop_back();
    UrlState& state = states_[url];
    if (state.attempts == 0) {
      state.first_start = Clock::now();
      state.next_backoff = options_.retry_backoff;
    }
    slot->url = url;
    slot->transfer.reset();
    curl_easy_setopt(slot->easy, CURLOPT_URL, urls_[url].c_str());
    const CURLMcode code = curl_multi_add_handle(multi_, slot->easy);
    if (code != CURLM_OK) {
      free_.push_back(slot);
      ++state.attempts;
      finish(url,
             fmt::format("libcurl could not start the transfer: {}", curl_multi_strerror(code)), 0,
             0);
      return;
    }
    slot->running = true;
    ++in_flight_;
    peak_in_flight_ = std::max(peak_in_flight_, in_flight_);
  }

  int next_wait_ms() const {
    // Transfers still to start in batches: look at the sockets, then come straight back.
    if (!free_.empty() && !pending_.empty()) return 0;
    const Clock::time_point now = Clock::now();
    Clock::duration wait = Clock::duration::max();
    if (timer_due_) wait = std::max(Clock::duration::zero(), timer_deadline_ - now);
    if (!retries_.empty() && !free_.empty()) {
      wait = std::min(wait, std::max(Clock::duration::zero(), retries_.top().due - now));
    }
    if (control_.stop.stop_possible()) wait = std::min<Clock::duration>(wait, kStopPoll);
    if (wait == Clock::duration::max()) return -1;
    // Rounded up: waking a little early would only spin.
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count());
  }

  void collect_finished() {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      const CURLcode code = message->data.result;
      Slot* slot = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &slot);
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      long connects = 0;
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
      connections_opened_ += static_cast<std::size_t>(std::max(0L, connects));
      curl_multi_remove_handle(multi_, easy);
      slot->running = false;
      --in_flight_;
      free_.push_back(slot);

      const std::size_t url = slot->url;
      UrlState& state = states_[url];
      ++state.attempts;
      std::string error = describe_failure(code, status, slot->transfer, options_);
      if (!error.empty() && state.attempts <= options_.retries && is_transient(code, status) &&
          !control_.stop.stop_requested()) {
        retries_.push({Clock::now() + state.next_backoff, url});
        state.next_backoff *= 2;
        continue;
      }
      if (options_.keep_body) results_[url].body = std::move(slot->transfer.body);
      finish(url, std::move(error), status, slot->transfer.bytes);
    }
  }

  void finish(std::size_t url, std::string error, long status, std::uint64_t bytes) {
    FetchResult& result = results_[url];
    const UrlState& state = states_[url];
    result.url = urls_[url];
    result.status = status;
    result.bytes = bytes;
    result.error = std::move(error);
    result.attempts = state.attempts;
    result.seconds = state.attempts == 0 ? 0.0 : seconds_since(state.first_start);
    ++done_;
    if (control_.on_progress) control_.on_progress(done_, urls_.size());
  }

  // On a stop: every URL without a result gets "not fetched: stopped"; transfers in flight are
  // removed (their connections closed by the multi handle's cleanup).
  void abandon_all() {
    for (Slot& slot : slots_) {
      if (!slot.running) continue;
      curl_multi_remove_handle(multi_, slot.easy);
      slot.running = false;
      --in_flight_;
      const std::size_t url = slot.url;
      ++states_[url].attempts;
      finish(url, std::string(kNotFetchedStopped), 0, slot.transfer.bytes);
    }
    while (!retries_.empty()) {
      finish(retries_.top().url, std::string(kNotFetchedStopped), 0, 0);
      retries_.pop();
    }
    for (std::size_t url : pending_) finish(url, std::string(kNotFetchedStopped), 0, 0);
    pending_.clear();
  }

  std::span<const std::string> urls_;
  const FetchOptions& options_;
  const FetchControl& control_;
  std::vector<FetchResult> results_;
  std::vector<UrlState> states_;
  std::vector<Slot> slots_;
  std::vector<Slot*> free_;
  std::deque<std::size_t> pending_;
  std::priority_queue<Retry, std::vector<Retry>, std::greater<>> retries_;
  CURLM* multi_ = nullptr;
  int epoll_fd_ = -1;
  std::vector<SocketState> sockets_;  // by descriptor
  bool timer_due_ = false;
  Clock::time_point timer_deadline_{};
  std::size_t done_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t peak_in_flight_ = 0;
  std::size_t connections_opened_ = 0;
};

}  // namespace

std::vector<FetchResult> fetch_with_event_loop(std::span<const std::string> urls,
                                               std::size_t concurrency, const FetchOptions& options,
                                               const FetchControl& control, EventLoopStats* stats) {
  if (concurrency == 0) throw std::invalid_argument("concurrency must be at least 1");
  validate(options);
  EventLoopStats ignored;
  if (urls.empty()) {
    if (stats != nullptr) *stats = {};
    return {};
  }
  EventLoop loop(urls, concurrency, options, control);
  return loop.run(stats != nullptr ? *stats : ignored);
}

// --- the engines
// ----------------------------------------------------------------------------------

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

  template <class Archive>
  void serialize(Archive& archive) {
    archive(url, connect_timeout_ms, timeout_ms, retries, retry_backoff_ms, keep_body,
            max_redirects);
  }

  [[nodiscard]] FetchOptions options() const {
    return {.connect_timeout = std::chrono::milliseconds(connect_timeout_ms),
            .timeout = std::chrono::milliseconds(timeout_ms),
            .retries = retries,
            .retry_backoff = std::chrono::milliseconds(retry_backoff_ms),
            .keep_body = keep_body,
            .max_redirects = max_redirects};
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
                         .max_redirects = options.max_redirects});
      }
      // Initialized here, before the pool forks its zygote, so that every worker inherits a ready
      // libcurl (and OpenSSL) instead of paying for the set-up on its first URL.
      ensure_curl_initialized();
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

// --- file descriptors
// -----------------------------------------------------------------------------

std::size_t fds_per_transfer(FetchEngine engine) noexcept {
  switch (engine) {
    case FetchEngine::kEventLoop:
      return 1;
    case FetchEngine::kProcess:
      return 2;
    case FetchEngine::kThread:
    case FetchEngine::kSerial:
      return 3;
  }
  return 3;
}

FdBudget reserve_file_descriptors(std::size_t concurrency, std::size_t fds_each) noexcept {
  FdBudget budget;
  budget.concurrency = concurrency;
  fds_each = std::max<std::size_t>(fds_each, 1);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return budget;
  const rlim_t needed = static_cast<rlim_t>(concurrency * fds_each + kFdReserve);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    const rlim_t target =
        limit.rlim_max == RLIM_INFINITY ? needed : std::min<rlim_t>(needed, limit.rlim_max);
    if (target > limit.rlim_cur) {
      rlimit raised = limit;
      raised.rlim_cur = target;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        budget.raised = true;
        limit.rlim_cur = target;
      }
    }
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    const std::size_t fit = limit.rlim_cur > kFdReserve + fds_each
                                ? (static_cast<std::size_t>(limit.rlim_cur) - kFdReserve) / fds_each
                                : 1;
    budget.concurrency = fit;
    try {
      budget.warning = fmt::format(
          "concurrency {} lowered to {}: each transfer holds {} descriptor{} and the open-file "
          "limit (ulimit -n) is {} (hard limit {}); raise the hard limit to run more at once",
          concurrency, fit, fds_each, fds_each == 1 ? "" : "s",
          static_cast<unsigned long long>(limit.rlim_cur),
          limit.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                          : std::to_string(limit.rlim_max));
    } catch (...) {
      budget.warning = "concurrency lowered to fit the open-file limit (ulimit -n)";
    }
  }
  return budget;
}

}  // namespace crew::workloads
