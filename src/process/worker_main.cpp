#include "process/worker_main.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "crew/detail/process_core.hpp"
#include "process/channel.hpp"

namespace crew::detail {
namespace {

// How often a worker checks that the host still lives. The check costs one getppid() per tick.
constexpr long kParentCheckMicros = 100'000;

pid_t g_host = 0;  // the host's pid, for the parent-death check in the SIGALRM handler

// Async-signal-safe: getppid and _exit only. A worker busy in a long task cannot read the end of
// stream that tells it the host died, so this tick notices instead: the host was SIGKILLed and
// the worker was reparented.
void check_parent(int) {
  if (::getppid() != g_host) ::_exit(0);
}

void watch_parent(pid_t host) {
  g_host = host;
  struct sigaction action {};
  action.sa_handler = check_parent;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGALRM, &action, nullptr);
  itimerval tick{};
  tick.it_interval.tv_usec = kParentCheckMicros;
  tick.it_value.tv_usec = kParentCheckMicros;
  ::setitimer(ITIMER_REAL, &tick, nullptr);
  check_parent(0);  // it may have died before the timer was set
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

[[noreturn]] void leave(int code) {
  std::fflush(nullptr);  // what a task printed must not be lost: _exit does not flush stdio
  ::_exit(code);
}

}  // namespace

int reset_child_process(int keep) noexcept {
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    ::signal(signo, signo == SIGINT ? SIG_IGN : SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  constexpr int kKept = 3;
  if (keep != kKept) {
    ::dup2(keep, kKept);  // dup2 clears close-on-exec on the copy; nothing here execs anyway
  }
  ::syscall(SYS_close_range, kKept + 1, ~0U, 0);
  return kKept;
}

void run_zygote(int control, pid_t host, const ProcessPoolOptions& options) noexcept {
  control = reset_child_process(control);
  for (;;) {
    char request = 0;
    ssize_t got;
    do {
      got = ::read(control, &request, 1);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) ::_exit(0);  // the host closed the pool or died
    int pair[2];
    SpawnReply reply{};
    try {
      make_socket_pair(pair);
    } catch (const std::system_error& error) {
      reply.pid = -error.code().value();
      if (!send_with_fd(control, &reply, sizeof reply, -1)) ::_exit(0);
      continue;
    }
    // CLONE_PARENT: the worker's parent is the host, which reaps it (wait4 gives its status and
    // rusage, and the host's RUSAGE_CHILDREN then includes its CPU). The zygote is single-threaded,
    // so the child inherits no lock held by another thread.
    const long pid =
        ::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid == 0) {
      ::close(control);
      ::close(pair[0]);
      run_worker(pair[1], host, options);
    }
    ::close(pair[1]);
    reply.pid = pid < 0 ? -errno : static_cast<pid_t>(pid);
    const bool sent = send_with_fd(control, &reply, sizeof reply, pid < 0 ? -1 : pair[0]);
    ::close(pair[0]);
    if (!sent) {
      // The host is gone: the worker sees end of stream on its socket (we closed our copy) and
      // exits.
      ::_exit(0);
    }
  }
}

void run_worker(int socket, pid_t host, const ProcessPoolOptions& options) noexcept {
  socket = reset_child_process(socket);
  watch_parent(host);
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
      std::fflush(nullptr);
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
