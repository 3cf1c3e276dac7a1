#include "interrupt.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <system_error>

namespace crew::cli {
namespace {

sigset_t interrupt_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void block_interrupt_signals() {
  const sigset_t set = interrupt_signals();
  if (const int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
  }
}

InterruptWatcher::InterruptWatcher() try : thread_([this] { watch(); }) {
} catch (const std::system_error& error) {
  // std::thread says only "Resource temporarily unavailable": name the thread and, for EAGAIN,
  // the limit that refused it (as the library's pools do).
  std::string context = "cannot start the signal-watching thread (std::thread";
  rlimit limit{};
  if (error.code() == std::errc::resource_unavailable_try_again &&
      getrlimit(RLIMIT_NPROC, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    context += "; RLIMIT_NPROC, this user's limit on processes and threads, is " +
               std::to_string(limit.rlim_cur);
  }
  throw std::system_error(error.code(), context + ")");
}

InterruptWatcher::~InterruptWatcher() {
  done_.store(true);
  // Thread-directed: pending on the watcher alone, which has it blocked and takes it in sigwait.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void InterruptWatcher::watch() {
  const sigset_t set = interrupt_signals();
  for (;;) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;  // only EINVAL is documented; the set is valid
    if (done_.load()) return;
    int expected = 0;
    if (first_signal_.compare_exchange_strong(expected, signal)) {
      stop_.request_stop();
      continue;
    }
    // A second signal: the user does not want to wait for the chunks in flight. write(2) and
    // _exit: no stdio lock that a worker might hold, no destructors waiting on busy threads.
    const std::string_view line = signal == SIGINT ? "\ncrew: SIGINT again: exiting at once\n"
                                                   : "\ncrew: SIGTERM again: exiting at once\n";
    [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, line.data(), line.size());
    _exit(128 + signal);
  }
}

}  // namespace crew::cli
