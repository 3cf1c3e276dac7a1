#include "interrupt.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

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

InterruptWatcher::InterruptWatcher() : thread_([this] { watch(); }) {}

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
