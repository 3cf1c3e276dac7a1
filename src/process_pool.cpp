// ProcessCore: the zygote, the workers and the one dispatcher thread that feeds them.
//
// Data flow: submit/map (any thread) → queue_ (under mu_) → eventfd wakes the dispatcher → it
// sends a request frame to an idle worker → the worker replies → the dispatcher decodes the reply
// into the job (settling a Future or filling a map chunk). The dispatcher waits on *any* worker
// with epoll over every worker's socket and pidfd, the zygote's socket and pidfd, and the eventfd;
// its timeout is the nearest task deadline.
//
// Process tree: host ─┬─ zygote (forked once, single-threaded)
//                     ├─ worker (cloned by the zygote with CLONE_PARENT: the host's child)
//                     └─ worker …
// The host reaps every child through its pidfd + wait4(pid): never waitpid(-1), never a
// process-wide signalfd, so the host program's own children and signals stay its own.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crew/detail/process_core.hpp"
#include "crew/errors.hpp"
#include "crew/process_pool.hpp"
#include "crew/worker_count.hpp"
#include "process/channel.hpp"
#include "process/transport.hpp"
#include "process/worker_main.hpp"
#include "start_failure.hpp"

namespace crew::detail {
namespace {

using Clock = std::chrono::steady_clock;

// After the pool stops taking work, how long workers and the zygote get to exit on their own
// before they are SIGKILLed; also the grace between SIGTERM and SIGKILL for a worker still in its
// initializer at shutdown.
constexpr auto kExitGrace = std::chrono::seconds(2);
// A draining shutdown with queued work waits this long for a starting worker to finish its
// initializer; then the worker is stopped and, if no worker can run the queued work, it fails.
constexpr auto kStartGrace = std::chrono::seconds(5);
// Frames taken from one worker per epoll wake-up before the others get their turn.
constexpr std::size_t kFramesPerWakeup = 64;

// "Too many open files (RLIMIT_NOFILE soft limit 30)": EMFILE names the limit that was hit.
std::string describe_errno(int error) {
  std::string text = std::strerror(error);
  if (error == EMFILE) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      text += " (RLIMIT_NOFILE soft limit " + std::to_string(limit.rlim_cur) + ")";
    }
  } else if (error == ENFILE) {
    text += " (the system-wide limit, fs.file-max)";
  }
  return text;
}

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what + ": " + describe_errno(error));
}

int pidfd_open(pid_t pid) {
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) throw_errno(errno, "crew: pidfd_open");
  return static_cast<int>(fd);
}

// The big buffer goes with it: clear() would keep a 300 MB argument's capacity.
void release_request(ProcessJob& job) noexcept { std::string().swap(job.request.bytes()); }

void pidfd_kill(int pidfd, int signo) noexcept {
  if (pidfd >= 0) ::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0);
}

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

// "killed by SIGSEGV" / "exited with status 3".
std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by " + signal_name(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (status " + std::to_string(status) + ")";
}

std::size_t threads_in_this_process() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoul(line.substr(8));
  }
  return 1;
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// The error as an exception_ptr, with no other copy left once this returns. A temporary E in the
// caller's full expression would share its what() string (reference-counted in libstdc++) with
// the stored exception and release it only after the job has settled, racing the thread that
// reads the error (ThreadSanitizer sees it).
template <class E>
std::exception_ptr make_error(std::string what) {
  return std::make_exception_ptr(E(std::move(what)));
}

}  // namespace

class ProcessCore::Impl {
 public:
  Impl(std::size_t workers, ProcessPoolOptions options)
      : target_workers_(workers), options_(std::move(options)) {
    if (options_.warn_if_threads_running) {
      const std::size_t threads = threads_in_this_process();
      if (threads > 1) {
        log("crew::ProcessPool: forking from a process that runs " + std::to_string(threads) +
            " threads; a lock another thread holds at fork time stays locked in the workers "
            "(make the pool before starting threads, or set warn_if_threads_running = false "
            "when they hold no lock a worker needs)");
      }
    }
    start_zygote();
    try {
      epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
      if (epoll_ < 0) throw_errno(errno, "crew: epoll_create1");
      wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (wake_ < 0) throw_errno(errno, "crew: eventfd");
      watch(wake_, kWakeTag);
      watch(zygote_socket_, kZygoteSocketTag);
      watch(zygote_pidfd_, kZygotePidfdTag);
      for (std::size_t i = 0; i < target_workers_; ++i) request_spawn();
      try {
        thread_ = std::thread([this] { run(); });
      } catch (const std::system_error& error) {
        detail::throw_start_failure("the pool's dispatcher thread", "std::thread",
                                    error.code().value());
      }
    } catch (...) {
      // No dispatcher: stop the zygote (and anything it made) here, then report.
      close_fd(zygote_socket_);
      pidfd_kill(zygote_pidfd_, SIGKILL);
      int status = 0;
      while (::waitpid(zygote_pid_, &status, 0) < 0 && errno == EINTR) {
      }
      close_fd(zygote_pidfd_);
      close_fd(epoll_);
      close_fd(wake_);
      throw;
    }
  }

  ~Impl() {
    join();
    close_fd(epoll_);
    close_fd(wake_);
  }

  void enqueue(std::shared_ptr<ProcessJob> job) {
    {
      std::lock_guard lock(mu_);
      if (!broken_reason_.empty())
        throw BrokenPool("crew::ProcessPool is broken: " + broken_reason_);
      if (closed_) throw PoolClosed("crew::ProcessPool: cannot take new work after shutdown()");
      queue_.push_back(std::move(job));
    }
    wake();
  }

  void cancel_group(std::uint64_t group, bool kill_running) {
    std::vector<std::shared_ptr<ProcessJob>> dropped;
    {
      std::lock_guard lock(mu_);
      for (auto it = queue_.begin(); it != queue_.end();) {
        if ((*it)->group == group) {
          dropped.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      if (kill_running) kill_groups_.push_back(group);
    }
    for (auto& job : dropped) {
      job->on_failure(make_error<Cancelled>("chunk cancelled before it ran"), job->started);
    }
    if (kill_running) wake();
  }

  std::size_t close(bool cancel_pending) {
    std::deque<std::shared_ptr<ProcessJob>> dropped;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      if (cancel_pending) dropped.swap(queue_);
      if (stop_ == StopMode::kNone) stop_ = StopMode::kDrain;
    }
    for (auto& job : dropped) {
      job->on_failure(make_error<Cancelled>("task was cancelled before it ran"), job->started);
    }
    wake();
    return dropped.size();
  }

  void terminate() {
    std::deque<std::shared_ptr<ProcessJob>> dropped;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      dropped.swap(queue_);
      stop_ = StopMode::kTerminate;
    }
    for (auto& job : dropped) {
      job->on_failure(make_error<Cancelled>("pool terminated before the task ran"), job->started);
    }
    wake();
    join();
  }

  void join() {
    std::lock_guard lock(join_mu_);
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  std::string broken_reason() const {
    std::lock_guard lock(mu_);
    return broken_reason_;
  }
  ProcessPoolStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }
  std::vector<pid_t> worker_pids() const {
    std::lock_guard lock(stats_mu_);
    std::vector<pid_t> pids;
    for (const auto& worker : stats_.workers) {
      if (worker.alive) pids.push_back(worker.pid);
    }
    return pids;
  }
  pid_t zygote_pid() const noexcept { return zygote_pid_; }
  std::chrono::milliseconds task_timeout_or_zero() const noexcept {
    return options_.task_timeout.value_or(std::chrono::milliseconds::zero());
  }

  void log(const std::string& line) const {
    if (options_.on_log) {
      options_.on_log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

 private:
  enum class StopMode { kNone, kDrain, kTerminate };
  // kStopping: being killed (its map was stopped, it timed out, or it broke the protocol). It takes
  // no work; a reply that raced the signal is still delivered; its pidfd ends it.
  enum class WorkerState { kStarting, kIdle, kBusy, kRetiring, kClosing, kStopping };

  struct Worker {
    std::uint32_t id = 0;  // its key in workers_ and its epoll tag; never reused, unlike a pid
    pid_t pid = 0;
    int socket = -1;
    int pidfd = -1;
    WorkerState state = WorkerState::kStarting;
    // Sent, not yet replied to (kBusy while not empty). At most one: a request sent behind a
    // running task cannot be taken back, and would wait behind it while another worker idles.
    std::deque<std::shared_ptr<ProcessJob>> jobs;
    FrameReader in;
    FrameWriter out;
    bool write_armed = false;                   // EPOLLOUT is in its socket's epoll interest
    std::size_t sent = 0;                       // requests sent over its life
    std::optional<Clock::time_point> deadline;  // of the front job, with a task_timeout
    std::optional<Clock::time_point> kill_at;   // SIGTERM sent; SIGKILL at this time
    bool timed_out = false;
    bool cancelled = false;      // SIGKILLed because its job's map was stopped
    bool start_stopped = false;  // SIGTERMed at shutdown while its initializer still ran
    bool sigterm_sent = false;
    Clock::time_point born{};    // when the host took it on
    std::string protocol_error;  // it wrote bytes that are not a frame; SIGKILLed
    std::size_t tasks = 0;
    std::size_t record = 0;  // index in stats_.workers
  };

  // epoll tags: small numbers for the fixed descriptors, else a worker's id with a flag bit. An
  // event for a worker reaped earlier in the same batch finds no worker and is dropped.
  static constexpr std::uint64_t kWakeTag = 1;
  static constexpr std::uint64_t kZygoteSocketTag = 2;
  static constexpr std::uint64_t kZygotePidfdTag = 3;
  static constexpr std::uint64_t kSocketFlag = 1ULL << 32;
  static constexpr std::uint64_t kPidfdFlag = 1ULL << 33;

  void start_zygote() {
    int pair[2];
    make_socket_pair(pair);
    const pid_t host = ::getpid();
    ZygotePlan plan(target_workers_);  // what the zygote needs, allocated before the fork
    // No fflush before the fork: the workers discard the stdio buffers they inherit, and
    // fflush(nullptr) takes every FILE's lock — a host thread blocked in fgets(stdin) holds
    // stdin's, and making the pool would wait for its input.
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int error = errno;
      ::close(pair[0]);
      ::close(pair[1]);
      detail::throw_start_failure("the zygote process", "fork", error);
    }
    if (pid == 0) {
      ::close(pair[0]);
      run_zygote(pair[1], host, options_, plan);
    }
    ::close(pair[1]);
    zygote_pid_ = pid;
    zygote_socket_ = pair[0];
    zygote_pidfd_ = pidfd_open(pid);
  }

  void watch(int fd, std::uint64_t tag) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = tag;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) != 0) throw_errno(errno, "crew: epoll_ctl");
  }
  // EPOLLOUT only while frames wait: a socket with room would otherwise wake the loop nonstop.
  void update_write_interest(Worker& worker) {
    const bool want = worker.socket >= 0 && worker.out.pending();
    if (want == worker.write_armed) return;
    epoll_event event{};
    event.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    event.data.u64 = worker.id | kSocketFlag;
    if (::epoll_ctl(epoll_, EPOLL_CTL_MOD, worker.socket, &event) != 0) {
      throw_errno(errno, "crew: epoll_ctl");
    }
    worker.write_armed = want;
  }
  void unwatch(int fd) noexcept {
    if (fd >= 0) ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  }

  // One eventfd write per batch of wake-ups, not per submit: a burst of submits while the
  // dispatcher has not yet drained the eventfd costs one system call.
  void wake() noexcept {
    if (wake_pending_.exchange(true)) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(wake_, &one, sizeof one);
  }

  void request_spawn() {
    if (zygote_socket_ < 0) {
      set_broken("the zygote process is gone, so no worker can be started");
      return;
    }
    const char request = 'S';
    ssize_t sent;
    do {
      sent = ::send(zygote_socket_, &request, 1, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent != 1) {
      set_broken("the zygote process is gone, so no worker can be started");
      return;
    }
    ++spawns_pending_;
  }

  // --- the dispatcher thread ------------------------------------------------------------------

  void run() noexcept {
    try {
      loop();
    } catch (const std::exception& error) {
      log(std::string("crew::ProcessPool: dispatcher failed: ") + error.what());
      emergency_stop();
    }
  }

  void loop() {
    epoll_event events[64];
    for (;;) {
      apply_commands();
      dispatch();
      if (stop_mode() != StopMode::kNone) {
        if (!drain_started_) drain_started_ = Clock::now();
        begin_closing_if_done();
        if (closing_ && live_processes() == 0) return;
      }
      // Frames already buffered (a worker's turn ended at its budget) raise no epoll event: the
      // wait must not sleep on them.
      const int ready = ::epoll_wait(epoll_, events, 64, unread_.empty() ? wait_timeout_ms() : 0);
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw_errno(errno, "crew: epoll_wait");
      }
      for (int i = 0; i < ready; ++i) handle_event(events[i].data.u64, events[i].events);
      for (const std::uint32_t id : std::exchange(unread_, {})) {
        auto it = workers_.find(id);
        if (it != workers_.end() && it->second.socket >= 0) {
          read_from_worker(it->second, kFramesPerWakeup);
        }
      }
      enforce_deadlines();
    }
  }

  StopMode stop_mode() const {
    std::lock_guard lock(mu_);
    return stop_;
  }

  // A worker that ended is replaced while the pool runs, and while a draining shutdown still has
  // queued work (retired workers must not strand it), never once broken or terminated.
  bool wants_replacement() const {
    std::lock_guard lock(mu_);
    if (!broken_reason_.empty()) return false;
    return stop_ == StopMode::kNone || (stop_ == StopMode::kDrain && !queue_.empty());
  }

  std::size_t live_processes() const { return workers_.size() + (zygote_pidfd_ >= 0 ? 1 : 0); }

  void apply_commands() {
    std::vector<std::uint64_t> groups;
    StopMode mode;
    {
      std::lock_guard lock(mu_);
      groups.swap(kill_groups_);
      mode = stop_;
    }
    for (auto& [id, worker] : workers_) {
      if (worker.jobs.empty() || worker.cancelled) continue;
      const bool in_group =
          std::find(groups.begin(), groups.end(), worker.jobs.front()->group) != groups.end();
      if (in_group || mode == StopMode::kTerminate) {
        worker.cancelled = true;
        worker.state = WorkerState::kStopping;
        pidfd_kill(worker.pidfd, SIGKILL);
      }
    }
    if (mode == StopMode::kTerminate && !terminated_) {
      terminated_ = true;
      for (auto& [id, worker] : workers_) pidfd_kill(worker.pidfd, SIGKILL);
      closing_started_ = Clock::now();
      closing_ = true;
      close_zygote_when_idle();
    }
  }

  // The one rule for sending work: only to an idle worker that is not going away. A worker being
  // stopped (map stopped, timed out, broken protocol), retiring or closing may still be kBusy or
  // have just replied; work sent to it would fail with its death. Its stream ended (its pidfd has
  // not said so yet): a send would hit a closed descriptor.
  bool accepts_work(const Worker& worker) const {
    if (worker.state != WorkerState::kIdle || worker.socket < 0) return false;
    if (worker.cancelled || worker.timed_out || worker.kill_at || !worker.protocol_error.empty()) {
      return false;
    }
    return !options_.max_tasks_per_child || worker.sent < *options_.max_tasks_per_child;
  }

  // Hands queued jobs, in queue order, one each to idle workers. No worker holds a second request
  // behind a running one: a socket cannot take a request back, so a task that turned out slow
  // would hold it while other workers idle (it did: 8 fast tasks then 4 hanging ones ran as
  // tasks/worker = [12,0,0,0]).
  void dispatch() {
    for (auto& [id, worker] : workers_) {
      if (!accepts_work(worker)) continue;
      for (;;) {
        std::shared_ptr<ProcessJob> job;
        std::string broken;
        {
          std::lock_guard lock(mu_);
          if (queue_.empty()) return;
          job = std::move(queue_.front());
          queue_.pop_front();
          broken = broken_reason_;
        }
        if (!broken.empty()) {
          job->on_failure(make_error<BrokenPool>("crew::ProcessPool is broken: " + broken),
                          job->started);
          continue;
        }
        // A job put back after its worker died has started already (see requeue).
        if (!job->started) {
          if (!job->start()) continue;
          job->started = true;
        }
        send_job(worker, std::move(job));
        break;
      }
    }
  }

  void arm_deadline(Worker& worker) {
    worker.deadline.reset();
    if (!options_.task_timeout || worker.jobs.empty()) return;
    // task_timeout × items, saturated: a huge chunk must not overflow into a past deadline.
    constexpr std::int64_t kLongestMs = std::int64_t{1} << 40;  // ≈ 35 years
    const std::int64_t per_item = options_.task_timeout->count();
    const auto items =
        static_cast<std::int64_t>(std::max<std::size_t>(1, worker.jobs.front()->items));
    const std::int64_t total = per_item > kLongestMs / items ? kLongestMs : per_item * items;
    worker.deadline = Clock::now() + std::chrono::milliseconds(total);
  }

  void send_job(Worker& worker, std::shared_ptr<ProcessJob> job) {
    const std::uint64_t prefix[2] = {reinterpret_cast<std::uint64_t>(job->entry),
                                     static_cast<std::uint64_t>(job->function)};
    worker.state = WorkerState::kBusy;
    ++worker.sent;
    const std::string_view body = job->request.bytes();
    worker.out.queue(FrameKind::kRequest,
                     std::string_view(reinterpret_cast<const char*>(prefix), sizeof prefix), body,
                     job);
    worker.jobs.push_back(std::move(job));
    if (worker.jobs.size() == 1) arm_deadline(worker);
    flush_worker(worker);
  }

  // Writes what the worker's socket takes now; the rest goes when epoll says there is room. A
  // peer that is gone: the frames are dropped, and its pidfd says what became of it (its jobs
  // fail or go back to the queue then). Reading goes on: replies it wrote are still there.
  void flush_worker(Worker& worker) {
    if (worker.socket < 0) {
      worker.out.clear();
      return;
    }
    if (worker.out.flush(worker.socket) == IoStatus::kEnd) worker.out.clear();
    update_write_interest(worker);
  }

  // Jobs a dead worker held but never started go back to the front of the queue, in order.
  void requeue(std::deque<std::shared_ptr<ProcessJob>>& jobs) {
    std::lock_guard lock(mu_);
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) queue_.push_front(std::move(*it));
    jobs.clear();
  }

  int wait_timeout_ms() const {
    std::optional<Clock::time_point> next;
    auto consider = [&](std::optional<Clock::time_point> at) {
      if (at && (!next || *at < *next)) next = at;
    };
    for (const auto& [id, worker] : workers_) {
      consider(worker.kill_at ? worker.kill_at : worker.deadline);
      if (drain_started_ && worker.state == WorkerState::kStarting && !worker.sigterm_sent) {
        consider(start_deadline(worker));
      }
    }
    if (closing_ && !closing_signalled_) consider(closing_started_ + kExitGrace);
    if (!next) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now());
    return static_cast<int>(std::clamp<long>(left.count(), 0, 60'000));
  }

  // During a draining shutdown; from its birth for a replacement made while draining.
  Clock::time_point start_deadline(const Worker& worker) const {
    return std::max(*drain_started_, worker.born) + kStartGrace;
  }

  // SIGTERM now, SIGKILL after `grace`: the user's code may clean up, but not for ever.
  void stop_worker(Worker& worker, std::chrono::milliseconds grace, Clock::time_point now) {
    if (worker.sigterm_sent) return;
    worker.sigterm_sent = true;
    pidfd_kill(worker.pidfd, SIGTERM);
    worker.kill_at = now + grace;
  }

  void enforce_deadlines() {
    const auto now = Clock::now();
    for (auto& [id, worker] : workers_) {
      if (worker.kill_at) {
        if (now >= *worker.kill_at) {
          pidfd_kill(worker.pidfd, SIGKILL);
          worker.kill_at.reset();
        }
      } else if (worker.deadline && now >= *worker.deadline && worker.state == WorkerState::kBusy &&
                 !worker.timed_out) {
        worker.timed_out = true;
        worker.state = WorkerState::kStopping;
        stop_worker(worker, options_.timeout_grace, now);
        worker.deadline.reset();
      } else if (drain_started_ && worker.state == WorkerState::kStarting &&
                 now >= start_deadline(worker)) {
        // A draining shutdown waits for queued work, which needs a started worker; an
        // initializer that never returns must not make it wait for ever.
        worker.start_stopped = true;
        stop_worker(worker, kExitGrace, now);
      }
    }
    if (closing_ && !closing_signalled_ && now >= closing_started_ + kExitGrace) {
      // Stragglers: a worker still in its initializer cannot see its stream end.
      closing_signalled_ = true;
      for (auto& [id, worker] : workers_) stop_worker(worker, kExitGrace, now);
      pidfd_kill(zygote_pidfd_, SIGKILL);
    }
  }

  void handle_event(std::uint64_t tag, std::uint32_t events) {
    if (tag == kWakeTag) {
      // Read, then clear the flag: a wake() whose write this read consumed has queued its work
      // already (the loop looks at the queue next), and any wake() after the clear writes again.
      // Clearing first would let this read swallow a write whose flag stays set: no more wakes.
      std::uint64_t count = 0;
      [[maybe_unused]] const ssize_t ignored = ::read(wake_, &count, sizeof count);
      wake_pending_.store(false);
    } else if (tag == kZygoteSocketTag) {
      if (zygote_socket_ >= 0) receive_spawned_worker();
    } else if (tag == kZygotePidfdTag) {
      if (zygote_pidfd_ >= 0) reap_zygote();
    } else if (tag & kSocketFlag) {
      // No worker, or its socket closed earlier in this batch: a stale event, dropped.
      auto it = workers_.find(static_cast<std::uint32_t>(tag & 0xffffffffULL));
      if (it == workers_.end()) return;
      if ((events & EPOLLOUT) && it->second.socket >= 0) flush_worker(it->second);
      if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && it->second.socket >= 0) {
        read_from_worker(it->second, kFramesPerWakeup);
      }
    } else if (tag & kPidfdFlag) {
      auto it = workers_.find(static_cast<std::uint32_t>(tag & 0xffffffffULL));
      if (it != workers_.end() && it->second.pidfd >= 0) reap_worker(it);
    }
  }

  // A worker cloned by the zygote that the host cannot take on (its socket did not arrive, or no
  // descriptor is left for its pidfd): it is the host's child, so kill and reap it by pid now; it
  // cannot be reused before this waitpid.
  void abandon_spawned(pid_t pid) noexcept {
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }

  void receive_spawned_worker() {
    SpawnReply reply{};
    int socket = -1;
    bool truncated = false;
    if (!recv_spawn_reply(zygote_socket_, &reply, sizeof reply, socket, truncated)) {
      // The zygote closed its end: it died. Its pidfd says how; pending spawns never come.
      unwatch(zygote_socket_);
      close_fd(zygote_socket_);
      spawns_pending_ = 0;
      return;
    }
    --spawns_pending_;
    if (reply.pid <= 0 || socket < 0) {
      if (socket >= 0) ::close(socket);
      if (reply.pid > 0) abandon_spawned(reply.pid);
      std::string why;
      if (reply.pid < 0) {
        // The zygote's socketpair runs out of descriptors; its clone, of processes.
        const int error = -reply.pid;
        why = error == EMFILE || error == ENFILE
                  ? "cannot start a worker process (socketpair, in the zygote): " +
                        describe_errno(error)
                  : detail::describe_start_failure("a worker process", "clone, in the zygote",
                                                   error, zygote_pid_);
      } else if (truncated) {
        why = "worker " + std::to_string(reply.pid) +
              "'s socket could not be received: " + describe_errno(EMFILE);
      } else {
        why = "the zygote sent worker " + std::to_string(reply.pid) + " without its socket";
      }
      set_broken(why);
      close_zygote_when_idle();
      return;
    }
    Worker worker;
    worker.id = next_worker_id_++;
    worker.pid = reply.pid;
    worker.socket = socket;
    worker.born = Clock::now();
    // Errors here are errno values, not exceptions: this is where descriptors run out, and the
    // sanitizers' own checks of a thrown object need descriptors too.
    const char* step = nullptr;
    int error = 0;
    const std::uint64_t tag = worker.id;
    epoll_event event{.events = EPOLLIN, .data = {.u64 = tag | kSocketFlag}};
    const int flags = ::fcntl(socket, F_GETFL);
    if (flags < 0 || ::fcntl(socket, F_SETFL, flags | O_NONBLOCK) != 0) {
      step = "fcntl(O_NONBLOCK)", error = errno;
    } else if ((worker.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, reply.pid, 0))) < 0) {
      step = "pidfd_open", error = errno;
    } else if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, socket, &event) != 0) {
      step = "epoll_ctl", error = errno;
    } else {
      event.data.u64 = tag | kPidfdFlag;
      if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, worker.pidfd, &event) != 0) {
        step = "epoll_ctl", error = errno;
        unwatch(socket);
      }
    }
    if (step != nullptr) {
      close_fd(worker.socket);
      close_fd(worker.pidfd);
      abandon_spawned(reply.pid);
      set_broken("cannot take on worker " + std::to_string(reply.pid) + ": " + step + ": " +
                 describe_errno(error));
      close_zygote_when_idle();
      return;
    }
    {
      std::lock_guard lock(stats_mu_);
      worker.record = stats_.workers.size();
      WorkerRecord record;
      record.pid = reply.pid;
      stats_.workers.push_back(std::move(record));
    }
    if (closing_) {
      worker.state = WorkerState::kClosing;
      unwatch(worker.socket);
      close_fd(worker.socket);  // end of stream: it exits after its initializer
      if (terminated_) pidfd_kill(worker.pidfd, SIGKILL);
    }
    workers_.emplace(worker.id, std::move(worker));
    close_zygote_when_idle();
  }

  // Handles up to `budget` frames the worker's socket holds now (level-triggered epoll comes back
  // for the rest, so one chatty worker cannot starve the others), or all of them when its process
  // is gone. Never blocks.
  void read_from_worker(Worker& worker, std::size_t budget) {
    for (;;) {
      if (worker.socket < 0) return;
      if (budget-- == 0) {
        unread_.push_back(worker.id);  // its turn is over; the loop comes back to it
        return;
      }
      FrameKind kind{};
      std::string_view body;
      IoStatus status = IoStatus::kOpen;
      if (!worker.in.next(worker.socket, kind, body, status)) {
        if (status == IoStatus::kOpen) return;
        if (status == IoStatus::kGarbage) {
          protocol_error(worker, worker.in.error());
          return;
        }
        // End of stream: the worker exited or is exiting; its pidfd reports how.
        close_socket(worker);
        return;
      }
      switch (kind) {
        case FrameKind::kReady:
          if (worker.state == WorkerState::kStarting) worker.state = WorkerState::kIdle;
          break;
        case FrameKind::kInitFailed:
          set_broken("initializer failed: " + std::string(body));
          break;
        case FrameKind::kReply:
          take_reply(worker, body);
          break;
        default:
          protocol_error(worker, "sent a frame of kind " +
                                     std::to_string(static_cast<std::uint32_t>(kind)) +
                                     ", which only the host sends");
          return;
      }
    }
  }

  // The worker wrote bytes that are not the protocol (a task scribbled on its socket): only this
  // worker is lost, and its task fails saying so.
  void protocol_error(Worker& worker, const std::string& what) {
    if (worker.protocol_error.empty()) worker.protocol_error = what;
    log("crew::ProcessPool: worker " + std::to_string(worker.pid) + " broke the protocol (" + what +
        "); killing it");
    worker.state = WorkerState::kStopping;
    pidfd_kill(worker.pidfd, SIGKILL);
    close_socket(worker);
  }

  void close_socket(Worker& worker) noexcept {
    worker.out.clear();
    unwatch(worker.socket);
    close_fd(worker.socket);
    worker.write_armed = false;
  }

  void take_reply(Worker& worker, std::string_view body) {
    if (worker.jobs.empty()) return;
    ByteReader reader(body.data(), body.size());
    ReplyHeader header{};
    try {
      header = reader.get<ReplyHeader>();
    } catch (const SerializationError&) {
      protocol_error(worker, "a reply of " + std::to_string(body.size()) + " bytes has no header");
      return;
    }
    auto job = std::move(worker.jobs.front());
    worker.jobs.pop_front();
    job->worker_wall = std::chrono::nanoseconds(header.wall_ns);
    arm_deadline(worker);
    ++worker.tasks;
    {
      std::lock_guard lock(stats_mu_);
      auto& record = stats_.workers[worker.record];
      record.tasks = worker.tasks;
      record.cpu += std::chrono::nanoseconds(header.cpu_ns);
      record.peak_rss_kib = std::max<long>(record.peak_rss_kib, header.peak_rss_kib);
      if (stats_.chunks.size() < ProcessPoolStats::kMaxChunkRecords) {
        stats_.chunks.push_back(ChunkRecord{.pid = worker.pid,
                                            .items = job->items,
                                            .wall = std::chrono::nanoseconds(header.wall_ns),
                                            .cpu = std::chrono::nanoseconds(header.cpu_ns)});
      } else {
        ++stats_.chunks_not_recorded;
      }
    }
    // A reply that raced a stop (timeout, stopped map) is delivered: nothing is lost. The worker
    // stays kStopping, so it gets no more work, and its death is then not a failure of any job.
    job->on_reply(reader);
    release_request(*job);
    if (worker.state != WorkerState::kBusy || !worker.jobs.empty()) return;
    if (options_.max_tasks_per_child && worker.tasks >= *options_.max_tasks_per_child) {
      worker.state = WorkerState::kRetiring;
      worker.out.queue(FrameKind::kQuit, {}, {}, nullptr);
      flush_worker(worker);
      if (wants_replacement()) {
        {
          std::lock_guard lock(stats_mu_);
          ++stats_.replacements;
        }
        request_spawn();
      }
      return;
    }
    worker.state = WorkerState::kIdle;
  }

  void reap_worker(std::unordered_map<std::uint32_t, Worker>::iterator it) {
    Worker& worker = it->second;
    int status = 0;
    rusage usage{};
    pid_t reaped;
    do {
      reaped = ::wait4(worker.pid, &status, WNOHANG, &usage);
    } while (reaped < 0 && errno == EINTR);
    if (reaped == 0) return;  // not yet (a pidfd can be readable a moment before wait4 sees it)
    const bool known = reaped == worker.pid;
    const std::string how =
        known ? describe_status(status) : "ended (status unknown: SIGCHLD ignored)";
    // A reply it wrote before dying may still sit in the socket (epoll can report the pidfd
    // first): take it, so a task that finished is never reported as crashed or timed out. It is
    // all there already, as the worker is gone; read only that, never up to end of stream, which
    // a grandchild that inherited the socket may hold off for as long as it lives.
    read_from_worker(worker, std::numeric_limits<std::size_t>::max());
    unwatch(worker.pidfd);
    close_fd(worker.pidfd);
    if (worker.socket >= 0) close_socket(worker);

    const bool stopping = stop_mode() != StopMode::kNone;
    const bool expected = worker.state == WorkerState::kRetiring ||
                          worker.state == WorkerState::kClosing || worker.timed_out ||
                          worker.cancelled || worker.start_stopped || terminated_ ||
                          (stopping && known && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    std::string exit_text = how;
    if (worker.timed_out) exit_text = "timed out (" + how + ")";
    if (worker.state == WorkerState::kRetiring) {
      exit_text = "retired after " + std::to_string(worker.tasks) + " tasks (" + how + ")";
    }
    if (!worker.protocol_error.empty()) exit_text = "broke the protocol (" + how + ")";
    {
      std::lock_guard lock(stats_mu_);
      auto& record = stats_.workers[worker.record];
      record.alive = false;
      record.exit = exit_text;
      if (known) {
        record.peak_rss_kib = std::max<long>(record.peak_rss_kib, usage.ru_maxrss);
        record.cpu = std::chrono::seconds(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     std::chrono::microseconds(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
      }
      if (worker.timed_out) ++stats_.timeouts;
      if (!expected) ++stats_.crashes;
    }

    if (!worker.jobs.empty()) {
      auto running = std::move(worker.jobs.front());
      worker.jobs.pop_front();
      release_request(*running);
      std::exception_ptr error;
      if (worker.timed_out) {
        error = std::make_exception_ptr(TaskTimeout(
            "task ran past its " + ms_text(*options_.task_timeout) +
            (running->items > 1 ? " × " + std::to_string(running->items) + " items" : "") +
            " timeout; worker " + std::to_string(worker.pid) + " was stopped (" + how + ")"));
      } else if (worker.cancelled || terminated_) {
        error = make_error<Cancelled>("cancelled while running: worker " +
                                      std::to_string(worker.pid) + " was stopped");
      } else if (!worker.protocol_error.empty()) {
        error = std::make_exception_ptr(
            WorkerCrashed(worker.pid, known && WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                          known && WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                          "worker " + std::to_string(worker.pid) +
                              " broke the protocol while running the task (" +
                              worker.protocol_error + ") and was killed"));
      } else {
        const int signo = known && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        const int code = known && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        error = std::make_exception_ptr(WorkerCrashed(
            worker.pid, signo, code,
            "worker " + std::to_string(worker.pid) + " died (" + how + ") while running the task"));
      }
      const std::uint64_t stopped_group = worker.cancelled ? running->group : 0;
      running->on_failure(std::move(error), true);
      // The rest never started: they run on another worker — unless the pool is being terminated
      // or they belong to the map whose stop killed this worker, which cancels them.
      std::deque<std::shared_ptr<ProcessJob>> again;
      for (auto& job : worker.jobs) {
        if (terminated_ || (stopped_group != 0 && job->group == stopped_group)) {
          job->on_failure(make_error<Cancelled>("cancelled before it ran"), job->started);
        } else {
          again.push_back(std::move(job));
        }
      }
      worker.jobs.clear();
      requeue(again);
    }
    const bool was_starting = worker.state == WorkerState::kStarting;
    const bool retiring = worker.state == WorkerState::kRetiring;
    const bool start_stopped = worker.start_stopped;
    const pid_t pid = worker.pid;
    workers_.erase(it);

    if (!expected) note_crash(pid, how, was_starting);
    if (retiring) return;  // its replacement was requested when it retired
    if (start_stopped) {
      // Stopped by a draining shutdown for not starting: another would hang the same way. The
      // queued work runs on the workers that did start, if any.
      const bool any_started = std::any_of(workers_.begin(), workers_.end(), [](const auto& entry) {
        return entry.second.state == WorkerState::kIdle || entry.second.state == WorkerState::kBusy;
      });
      if (!any_started && !workers_has_starting_unstopped()) {
        set_broken("shutdown: no worker finished its initializer within " +
                   std::to_string(kStartGrace.count()) + " s, so the queued tasks cannot run");
      }
      return;
    }
    if (wants_replacement()) {
      {
        std::lock_guard lock(stats_mu_);
        ++stats_.replacements;
      }
      request_spawn();
    }
  }

  bool workers_has_starting_unstopped() const {
    return std::any_of(workers_.begin(), workers_.end(), [](const auto& entry) {
      return entry.second.state == WorkerState::kStarting && !entry.second.start_stopped;
    });
  }

  void note_crash(pid_t pid, const std::string& how, bool while_starting) {
    const auto now = Clock::now();
    crash_times_.push_back(now);
    while (!crash_times_.empty() && now - crash_times_.front() > options_.crash_loop_window) {
      crash_times_.pop_front();
    }
    if (crash_times_.size() >= options_.crash_loop_deaths) {
      set_broken("crash loop: " + std::to_string(crash_times_.size()) + " workers died within " +
                 ms_text(options_.crash_loop_window) + " (last: worker " + std::to_string(pid) +
                 " " + how + (while_starting ? " while starting" : "") + ")");
    }
  }

  void reap_zygote() {
    int status = 0;
    pid_t reaped;
    do {
      reaped = ::waitpid(zygote_pid_, &status, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    if (reaped == 0) return;
    unwatch(zygote_pidfd_);
    close_fd(zygote_pidfd_);
    if (zygote_socket_ >= 0) {
      unwatch(zygote_socket_);
      close_fd(zygote_socket_);
    }
    spawns_pending_ = 0;
    if (!closing_) {
      set_broken("the zygote process (pid " + std::to_string(zygote_pid_) + ") " +
                 (reaped == zygote_pid_ ? describe_status(status) : std::string("ended")) +
                 "; no worker can be replaced");
    }
  }

  void set_broken(const std::string& reason) {
    std::deque<std::shared_ptr<ProcessJob>> dropped;
    {
      std::lock_guard lock(mu_);
      if (!broken_reason_.empty()) return;
      broken_reason_ = reason;
      dropped.swap(queue_);
    }
    log("crew::ProcessPool is broken: " + reason);
    for (auto& job : dropped) {
      job->on_failure(make_error<BrokenPool>("crew::ProcessPool is broken: " + reason),
                      job->started);
    }
    // Idle workers are of no more use; busy ones finish their job first.
    for (auto& [id, worker] : workers_) {
      if (worker.state == WorkerState::kIdle || worker.state == WorkerState::kStarting) {
        worker.state = WorkerState::kClosing;
        close_socket(worker);
      }
    }
  }

  // Once draining is done (nothing queued, nothing running), closes every worker's socket (each
  // exits at end of stream) and, after the last spawn reply, the zygote's.
  void begin_closing_if_done() {
    if (!closing_) {
      {
        std::lock_guard lock(mu_);
        if (!queue_.empty()) return;
      }
      for (const auto& [id, worker] : workers_) {
        if (!worker.jobs.empty()) return;
      }
      closing_ = true;
      closing_started_ = Clock::now();
    }
    // A retiring worker's QUIT may still be queued: it exits at end of stream all the same.
    for (auto& [id, worker] : workers_) {
      if (worker.socket >= 0 && worker.jobs.empty() && worker.state != WorkerState::kStopping) {
        worker.state = WorkerState::kClosing;
        close_socket(worker);
      }
    }
    close_zygote_when_idle();
  }

  // The zygote's socket closes only when no spawn reply is outstanding: a worker cloned but never
  // reported would be a child the host does not know of.
  void close_zygote_when_idle() {
    if (!closing_ || spawns_pending_ != 0 || zygote_socket_ < 0) return;
    unwatch(zygote_socket_);
    close_fd(zygote_socket_);
  }

  // The dispatcher itself failed (a system call it cannot do without): kill and reap everything
  // so nothing is left behind, and fail what was waiting.
  void emergency_stop() noexcept {
    set_broken("the dispatcher thread failed");
    for (auto& [id, worker] : workers_) {
      pidfd_kill(worker.pidfd, SIGKILL);
      int status = 0;
      while (::waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
      }
      for (auto& job : worker.jobs) {
        job->on_failure(make_error<BrokenPool>("crew::ProcessPool: the dispatcher thread failed"),
                        true);
      }
      worker.jobs.clear();
      close_fd(worker.pidfd);
      close_fd(worker.socket);
    }
    workers_.clear();
    close_fd(zygote_socket_);
    pidfd_kill(zygote_pidfd_, SIGKILL);
    int status = 0;
    while (::waitpid(zygote_pid_, &status, 0) < 0 && errno == EINTR) {
    }
    close_fd(zygote_pidfd_);
  }

  const std::size_t target_workers_;
  const ProcessPoolOptions options_;  // the zygote and workers hold a forked copy

  mutable std::mutex mu_;
  std::deque<std::shared_ptr<ProcessJob>> queue_;  // guarded by mu_
  std::vector<std::uint64_t> kill_groups_;         // guarded by mu_: map runs stopped by the caller
  bool closed_ = false;                            // guarded by mu_: enqueue refuses work
  StopMode stop_ = StopMode::kNone;                // guarded by mu_
  std::string broken_reason_;                      // guarded by mu_

  mutable std::mutex stats_mu_;
  ProcessPoolStats stats_;  // guarded by stats_mu_

  // The dispatcher thread only (and the constructor, before it starts).
  int epoll_ = -1;
  int wake_ = -1;
  pid_t zygote_pid_ = -1;
  int zygote_socket_ = -1;
  int zygote_pidfd_ = -1;
  std::size_t spawns_pending_ = 0;
  std::unordered_map<std::uint32_t, Worker> workers_;
  std::vector<std::uint32_t> unread_;  // workers whose turn ended with frames maybe still buffered
  std::deque<Clock::time_point> crash_times_;
  bool closing_ = false;
  bool closing_signalled_ = false;  // stragglers were sent SIGTERM after kExitGrace
  bool terminated_ = false;
  Clock::time_point closing_started_{};
  std::optional<Clock::time_point> drain_started_;  // when shutdown was first seen
  std::uint32_t next_worker_id_ = 1;

  std::atomic<bool> wake_pending_{false};  // an eventfd write is outstanding

  std::mutex join_mu_;
  std::thread thread_;
};

// --- ProcessCore ------------------------------------------------------------------------------

ProcessCore::ProcessCore(std::size_t workers, ProcessPoolOptions options)
    : workers_(workers), impl_(std::make_unique<Impl>(workers, std::move(options))) {}

ProcessCore::~ProcessCore() {
  impl_->close(false);
  impl_->join();
}

std::chrono::milliseconds ProcessCore::task_timeout_or_zero() const noexcept {
  return impl_->task_timeout_or_zero();
}

void ProcessCore::enqueue(std::shared_ptr<ProcessJob> job) { impl_->enqueue(std::move(job)); }

std::uint64_t ProcessCore::new_group() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1);
}

void ProcessCore::cancel_group(std::uint64_t group, bool kill_running) {
  impl_->cancel_group(group, kill_running);
}

ShutdownReport ProcessCore::shutdown(const ShutdownOptions& options) {
  ShutdownReport report;
  report.tasks_cancelled = impl_->close(options.cancel_pending);
  if (options.wait) impl_->join();
  report.unobserved_failures = failures_->count();
  report.first_unobserved_failure = failures_->first();
  return report;
}

void ProcessCore::terminate() { impl_->terminate(); }
bool ProcessCore::closed() const { return impl_->closed(); }
std::string ProcessCore::broken_reason() const { return impl_->broken_reason(); }
ProcessPoolStats ProcessCore::stats() const { return impl_->stats(); }
std::vector<pid_t> ProcessCore::worker_pids() const { return impl_->worker_pids(); }
pid_t ProcessCore::zygote_pid() const noexcept { return impl_->zygote_pid(); }
void ProcessCore::log(const std::string& line) const { impl_->log(line); }

void write_task_failure(ByteWriter& reply, const std::exception_ptr& error) noexcept {
  try {
    reply.put(ReplyStatus::kFailed);
    reply.put_string(exception_type_name(error));
    std::string message;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "(not derived from std::exception)";
    }
    reply.put_string(message);
  } catch (...) {
    // Out of memory while describing a failure: the host reads a short reply and reports that.
  }
}

std::exception_ptr read_task_failure(ByteReader& reply) {
  std::string type = reply.get_string();
  std::string message = reply.get_string();
  return std::make_exception_ptr(TaskFailed(std::move(type), std::move(message)));
}

}  // namespace crew::detail

namespace crew {

ProcessPool::ProcessPool(ProcessPoolOptions options) {
  std::size_t workers = 0;
  if (options.workers) {
    workers = *options.workers;
    if (workers < 1 || workers > kMaxWorkers) {
      throw std::invalid_argument("crew::ProcessPool: workers must be between 1 and " +
                                  std::to_string(kMaxWorkers) + ", got " + std::to_string(workers));
    }
  } else {
    workers = default_worker_count().count;
  }
  if (options.max_tasks_per_child && *options.max_tasks_per_child == 0) {
    throw std::invalid_argument(
        "crew::ProcessPool: max_tasks_per_child must be >= 1, got 0 (leave it unset for no limit)");
  }
  if (options.task_timeout && options.task_timeout->count() <= 0) {
    throw std::invalid_argument("crew::ProcessPool: task_timeout must be > 0 ms, got " +
                                std::to_string(options.task_timeout->count()) +
                                " (leave it unset for no limit)");
  }
  if (options.timeout_grace.count() < 0) {
    throw std::invalid_argument("crew::ProcessPool: timeout_grace must be >= 0 ms");
  }
  if (options.crash_loop_deaths == 0) {
    throw std::invalid_argument("crew::ProcessPool: crash_loop_deaths must be >= 1, got 0");
  }
  core_ = std::make_unique<detail::ProcessCore>(workers, std::move(options));
}

ProcessPool::~ProcessPool() {
  const ShutdownReport report = core_->shutdown({.wait = true, .cancel_pending = false});
  if (report.unobserved_failures != 0) {
    core_->log("crew::ProcessPool: " + std::to_string(report.unobserved_failures) +
               " failed task(s) were never observed (their futures were dropped); first: " +
               report.first_unobserved_failure);
  }
}

ShutdownReport ProcessPool::shutdown(const ShutdownOptions& options) {
  return core_->shutdown(options);
}

void ProcessPool::terminate() { core_->terminate(); }

}  // namespace crew
