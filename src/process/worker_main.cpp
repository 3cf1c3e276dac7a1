#include "process/worker_main.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

#include "crew/detail/process_core.hpp"
#include "process/channel.hpp"

namespace crew::detail {
namespace {

// crew's descriptor in a worker sits at or above this number, so that it never takes a number the
// host's code may still refer to (an inherited FILE*, a saved descriptor). Set by the zygote
// before it clones any worker.
int g_crew_fd_floor = 3;
constexpr long kCrewFdTarget = 1023;

// Whether the workers may ask for SIGKILL when the host dies (see run_zygote).
bool g_parent_death_signal = false;

long raw_pidfd_open(pid_t pid) { return ::syscall(SYS_pidfd_open, pid, 0); }

void pidfd_kill(int pidfd) { (void)::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0); }

// The highest descriptor open now, or -1 when /proc cannot tell.
int highest_open_descriptor() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  const int own = ::dirfd(dir);
  int highest = 2;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own && fd > highest) highest = fd;
  }
  ::closedir(dir);
  return highest;
}

// Just above every descriptor the host had open when it forked the zygote, and no lower than
// min(RLIMIT_NOFILE, 1024) - 1: a fixed, high number in the common case, below FD_SETSIZE (a task
// may still use select() on its own descriptors), and never so high that each worker's descriptor
// table grows to a huge RLIMIT_NOFILE.
int crew_fd_floor() {
  rlimit limit{};
  rlim_t soft = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    soft = limit.rlim_cur;
  }
  const long ceiling = static_cast<long>(std::min<rlim_t>(soft, 1 << 20));
  long floor = std::min<long>(ceiling - 1, kCrewFdTarget);
  const int highest = highest_open_descriptor();
  if (highest < 0) floor = ceiling - 1;  // no /proc: the top of the table is free of the host's
  if (highest >= floor) floor = highest + 1;
  if (floor >= ceiling) return 3;  // no room above the host's: take the lowest free
  return static_cast<int>(std::max<long>(floor, 3));
}

// Descriptors 0, 1 and 2 open (on /dev/null where the host had closed one), so that no descriptor
// the zygote opens takes one of those numbers and passes into a worker as its stdin or stdout.
void open_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) ::close(opened);  // fd was free: open() took it, or failed
  }
}

// Moves `fd` to the lowest free number >= `floor`, close-on-exec, and closes every other
// descriptor above 2. Returns where it now is.
int keep_only(int fd, int floor) noexcept {
  if (fd > 3) ::syscall(SYS_close_range, 3U, static_cast<unsigned>(fd - 1), 0U);
  ::syscall(SYS_close_range, static_cast<unsigned>(std::max(fd, 2) + 1), ~0U, 0U);
  if (fd < floor) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (moved >= 0) {
      ::close(fd);
      return moved;
    }
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

void reset_signals() noexcept {
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    ::signal(signo, signo == SIGINT ? SIG_IGN : SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

std::int64_t cpu_now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

long peak_rss_kib() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// Empties a stream inherited from the host without writing a byte of it. The host may have been
// writing to it from another thread while it forked, so the copy can be torn mid-update (glibc
// resets the stream's lock in the child, not its buffer pointers): __fpurge drops the buffered
// bytes, then setvbuf with a buffer of our own puts every pointer back in a consistent empty state
// (its sync finds nothing to write and nothing to seek after the purge). The buffering mode stays.
void discard_inherited_buffer(std::FILE* stream, char* buffer, std::size_t size) noexcept {
  const std::size_t current = ::__fbufsize(stream);  // 0: never used; 1: unbuffered
  const bool line = ::__flbf(stream) != 0;
  ::__fpurge(stream);
  if (current == 0) return;
  if (current == 1) {
    (void)std::setvbuf(stream, nullptr, _IONBF, 0);
  } else {
    (void)std::setvbuf(stream, buffer, line ? _IOLBF : _IOFBF, size);
  }
}

char g_stdout_buffer[BUFSIZ];
char g_stderr_buffer[BUFSIZ];

// Flushes what the task printed: stdout and stderr only. Other FILE*s may be copies of the host's
// (their buffers hold the host's data, their descriptors are closed here); a FILE the task opened
// is the task's to flush or close.
void flush_standard_streams() noexcept {
  std::fflush(stdout);
  std::fflush(stderr);
}

[[noreturn]] void leave(int code) {
  flush_standard_streams();  // _exit does not flush stdio
  ::_exit(code);
}

// The zygote's watch over the workers it cloned: their pidfds (not its children, so no wait).
// Works in the plan's vectors, whose capacity the host reserved: no allocation after the fork.
class CloneWatch {
 public:
  explicit CloneWatch(std::vector<int>& pidfds) : pidfds_(pidfds) {}
  void add(int pidfd) { pidfds_.push_back(pidfd); }  // allocates only past the reserved bound
  bool empty() const noexcept { return pidfds_.empty(); }
  // Appends a pollfd per worker to `fds`.
  void poll_on(std::vector<pollfd>& fds) const {
    for (int fd : pidfds_) fds.push_back({.fd = fd, .events = POLLIN, .revents = 0});
  }
  // Forgets the workers whose pidfd in `fds` (from `first` on, in the order poll_on wrote them)
  // says they exited.
  void forget_exited(const std::vector<pollfd>& fds, std::size_t first) {
    std::size_t kept = 0;
    for (std::size_t i = first; i < fds.size(); ++i) {
      if (fds[i].revents != 0) {
        ::close(fds[i].fd);
      } else {
        pidfds_[kept++] = fds[i].fd;
      }
    }
    pidfds_.resize(kept);
  }
  [[noreturn]] void kill_all_and_exit() {
    for (int fd : pidfds_) pidfd_kill(fd);
    ::_exit(0);
  }

 private:
  std::vector<int>& pidfds_;
};

// Clones one worker and sends its pid and socket to the host. false: the host is gone.
bool spawn_worker(int control, pid_t host, const ProcessPoolOptions& options, CloneWatch& clones) {
  int pair[2];
  SpawnReply reply{};
  try {
    make_socket_pair(pair);
  } catch (const std::system_error& error) {
    reply.pid = -error.code().value();
    return send_with_fd(control, &reply, sizeof reply, -1);
  }
  // CLONE_PARENT: the worker's parent is the host, which reaps it (wait4 gives its status and
  // rusage, and the host's RUSAGE_CHILDREN then includes its CPU). The zygote is single-threaded,
  // so the child inherits no lock held by another thread.
  const long pid = ::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) run_worker(pair[1], host, options);
  ::close(pair[1]);
  reply.pid = pid < 0 ? -errno : static_cast<pid_t>(pid);
  if (pid > 0) {
    // No race with the pid's reuse: the host reaps a worker only once it has this reply.
    const long pidfd = raw_pidfd_open(static_cast<pid_t>(pid));
    if (pidfd >= 0) clones.add(static_cast<int>(pidfd));
  }
  const bool sent = send_with_fd(control, &reply, sizeof reply, pid < 0 ? -1 : pair[0]);
  ::close(pair[0]);
  return sent;
}

}  // namespace

ZygotePlan::ZygotePlan(std::size_t max_workers)
    : crew_fd_floor(detail::crew_fd_floor()),
      // With CLONE_PARENT a worker's parent is the thread that forks the zygote: only for the
      // main thread is its exit the host's end.
      parent_death_signal(::syscall(SYS_gettid) == ::getpid()) {
  // Workers alive at once: the pool's, plus retiring ones not yet gone and their replacements.
  clone_pidfds.reserve(2 * max_workers + 16);
  poll_fds.reserve(2 * max_workers + 18);
}

void run_zygote(int control, pid_t host, const ProcessPoolOptions& options,
                ZygotePlan& plan) noexcept {
  reset_signals();
  open_standard_descriptors();
  g_crew_fd_floor = plan.crew_fd_floor;  // measured by the host: the table as it was
  control = keep_only(control, g_crew_fd_floor);
  // The zygote watches the host instead of each worker ticking a timer: it is idle and
  // single-threaded, so it can wait on the host's pidfd and kill every worker it cloned the moment
  // the host dies, whatever those workers are doing. Workers stay single-threaded and signal-free.
  const long host_pidfd = raw_pidfd_open(host);
  if (host_pidfd < 0 || ::getppid() != host) ::_exit(0);  // the host died before we could watch
  g_parent_death_signal = plan.parent_death_signal;
  CloneWatch clones(plan.clone_pidfds);
  std::vector<pollfd>& fds = plan.poll_fds;
  for (;;) {
    fds.clear();
    fds.push_back({.fd = static_cast<int>(host_pidfd), .events = POLLIN, .revents = 0});
    // A closed control stream is polled no more (fd -1 is skipped); the zygote then waits only
    // for its workers to exit, or for the host to die during its shutdown.
    fds.push_back({.fd = control, .events = POLLIN, .revents = 0});
    clones.poll_on(fds);
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      clones.kill_all_and_exit();  // cannot watch: leave no worker unwatched
    }
    if (fds[0].revents != 0) clones.kill_all_and_exit();  // the host died
    clones.forget_exited(fds, 2);
    if (fds[1].revents != 0) {
      char request = 0;
      ssize_t got;
      do {
        got = ::read(control, &request, 1);
      } while (got < 0 && errno == EINTR);
      if (got <= 0) {
        ::close(control);  // the host closed the pool: every worker is ending too
        control = -1;
      } else {
        bool sent = false;
        try {
          sent = spawn_worker(control, host, options, clones);
        } catch (...) {
          sent = false;
        }
        if (!sent) clones.kill_all_and_exit();  // the host is gone
      }
    }
    if (control < 0 && clones.empty()) ::_exit(0);
  }
}

void run_worker(int socket, pid_t host, const ProcessPoolOptions& options) noexcept {
  // What the host had buffered for stdout and stderr when it forked the zygote is the host's to
  // print: printed here too, it would appear once per worker.
  discard_inherited_buffer(stdout, g_stdout_buffer, sizeof g_stdout_buffer);
  discard_inherited_buffer(stderr, g_stderr_buffer, sizeof g_stderr_buffer);
  socket = keep_only(socket, g_crew_fd_floor);
  if (g_parent_death_signal) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != host) ::_exit(0);  // the host died before the request took effect
  }
  try {
    if (options.initializer) options.initializer();
  } catch (...) {
    const std::string what = describe_exception(std::current_exception());
    (void)send_frame(socket, FrameKind::kInitFailed, {what});
    leave(1);
  }
  try {
    if (!send_frame(socket, FrameKind::kReady, {})) leave(0);
    FrameBuffer request;
    ByteWriter reply;
    for (;;) {
      FrameKind kind{};
      if (!recv_frame(socket, kind, request)) leave(0);
      if (kind != FrameKind::kRequest) leave(0);  // kQuit, or anything unexpected
      const auto start = std::chrono::steady_clock::now();
      const std::int64_t cpu_start = cpu_now_ns();
      ByteReader in(request.data(), request.size());
      const auto entry = reinterpret_cast<WorkerEntry>(in.get<std::uint64_t>());
      const auto function = static_cast<std::uintptr_t>(in.get<std::uint64_t>());
      reply.clear();
      entry(function, in, reply);
      flush_standard_streams();
      const ReplyHeader header{
          .wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now() - start)
                         .count(),
          .cpu_ns = cpu_now_ns() - cpu_start,
          .peak_rss_kib = peak_rss_kib(),
      };
      if (!send_frame(socket, FrameKind::kReply,
                      {std::string_view(reinterpret_cast<const char*>(&header), sizeof header),
                       std::string_view(reply.bytes())})) {
        leave(0);
      }
    }
  } catch (...) {
    // Only the channel throws here (entries catch the task's own exceptions): the host sees end
    // of stream and this exit status.
    leave(2);
  }
}

}  // namespace crew::detail
