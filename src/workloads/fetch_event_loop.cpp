// fetch_with_event_loop: one curl multi handle driven by epoll on the calling thread.
#include <curl/curl.h>
#include <fmt/core.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <deque>
#include <queue>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "crew/workloads/fetch.hpp"
#include "workloads/fetch_transfer.hpp"

namespace crew::workloads {
namespace {

using Clock = std::chrono::steady_clock;
using detail::configure;
using detail::ensure_curl_initialized;
using detail::read_outcome;
using detail::seconds_since;
using detail::Transfer;

// How often a run that can be stopped looks at its stop token while it waits.
constexpr std::chrono::milliseconds kStopPoll{50};
// Transfers the event loop starts per turn (see EventLoop::start_what_may_start).
constexpr std::size_t kStartBatch = 32;

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
    detail::prepare(slot->easy, urls_[url], slot->transfer);
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
      detail::AttemptOutcome outcome = read_outcome(easy, code, slot->transfer, options_);
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
      if (outcome.transient && state.attempts <= options_.retries &&
          !control_.stop.stop_requested()) {
        retries_.push({Clock::now() + state.next_backoff, url});
        state.next_backoff *= 2;
        continue;
      }
      if (options_.keep_body) results_[url].body = std::move(slot->transfer.body);
      results_[url].effective_url = std::move(outcome.effective_url);
      results_[url].redirects = outcome.redirects;
      finish(url, std::move(outcome.error), outcome.status, slot->transfer.bytes);
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

}  // namespace crew::workloads
