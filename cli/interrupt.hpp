// Ctrl-C for the crew command, without a signal handler: SIGINT and SIGTERM are blocked in every
// thread and one watcher thread takes them with sigwait, where any code may run. The first
// signal requests a stop (commands pass the token to MapOptions::stop and finish what is in
// flight); a second one ends the process at once.
#pragma once

#include <pthread.h>

#include <atomic>
#include <stop_token>
#include <thread>

namespace crew::cli {

// Blocks SIGINT and SIGTERM in the calling thread; threads created afterwards inherit the mask.
// Call first thing in main, before anything can start a thread: a thread that left them unblocked
// would take the signal with its default action (the process dies without a word).
// Throws: std::system_error if pthread_sigmask fails. Thread safety: call once, from main.
void block_interrupt_signals();

// Watches for SIGINT and SIGTERM for as long as it lives. Requires block_interrupt_signals() to
// have run first (else the signals still kill the process by default).
//
// First signal: stop_token() reports a stop; exit_code() becomes 128 + the signal's number (130
// for SIGINT, 143 for SIGTERM). Second signal: writes one line to stderr and calls _exit(128 +
// signal) from the watcher thread, so a command stuck in a long chunk cannot hold the user hostage.
//
// Thread safety: stop_token(), interrupted() and exit_code() may be called from any thread.
class InterruptWatcher {
 public:
  // Starts the watcher thread. Throws: std::system_error when no thread can be started.
  InterruptWatcher();
  // Stops the watcher thread and joins it. Blocks: microseconds; the thread is woken by a SIGTERM
  // sent to it alone (pthread_kill), which never reaches the rest of the process.
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  [[nodiscard]] std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  [[nodiscard]] bool interrupted() const noexcept { return first_signal_.load() != 0; }
  // 128 + the first signal's number, or 0 when no signal came.
  [[nodiscard]] int exit_code() const noexcept {
    const int signal = first_signal_.load();
    return signal == 0 ? 0 : 128 + signal;
  }

 private:
  void watch();

  std::stop_source stop_;
  std::atomic<int> first_signal_{0};
  // Set by the destructor before it wakes the thread: a signal seen afterwards is the wake-up (or a
  // signal arriving while the command has already finished), not a user's request.
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace crew::cli
