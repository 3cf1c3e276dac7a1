// Runs a program (the crew CLI, mostly) as a child process and collects its exit status and
// output, for tests that treat a binary as a black box. Every child is reaped, even when a test
// fails or times out, so the leak guard never sees one left behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crew::testing {

struct CommandResult {
  // The exit status when the child exited; -1 when a signal killed it (see term_signal).
  int exit_code = -1;
  // The signal that killed the child, or 0.
  int term_signal = 0;
  std::string out;  // everything it wrote on stdout
  std::string err;  // everything it wrote on stderr
  // true when the child outlived the timeout and was SIGKILLed (with its process group, if it had
  // its own).
  bool timed_out = false;
  // From the spawn to the reaping.
  std::chrono::steady_clock::duration wall{};
};

struct SpawnOptions {
  // Put the child in a new process group whose id is its pid (setpgid(0, 0) before exec), so a test
  // can signal the child and everything it starts, as a terminal's Ctrl-C would.
  bool own_process_group = false;
  // Give the child a pseudo-terminal as stderr (isatty(2) is true there), for output that a
  // program draws only on a terminal. What it writes comes back in CommandResult::err, with the
  // terminal's "\n" → "\r\n" translation.
  bool stderr_is_terminal = false;
  // "NAME=value" entries added to (or replacing those of) the test process's environment.
  std::vector<std::string> env = {};
};

// A running child with its stdout and stderr on pipes and stdin on /dev/null. It starts with an
// empty signal mask and SIGINT, SIGTERM and SIGPIPE at their default actions, whatever the test
// process has. Not copyable; the destructor kills (SIGKILL) and reaps a child not yet waited for.
class ChildProcess {
 public:
  // Starts argv[0] (a path; PATH is not searched) with argv. Throws: std::system_error when
  // posix_spawn or pipe2 fails.
  explicit ChildProcess(const std::vector<std::string>& argv, SpawnOptions options = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Reads the child's stdout up to the next '\n' and returns that line without it, for a child
  // that announces something ("READY 8080") and keeps running. nullopt when stdout closes or
  // `timeout` passes first. stderr is not read meanwhile. What it read is still part of
  // CommandResult::out, which wait() returns.
  std::optional<std::string> read_stdout_line(std::chrono::milliseconds timeout);

  // Reads stdout and stderr until both close and reaps the child. If that takes longer than
  // `timeout` from this call, kills it (its group too, with own_process_group) and reports
  // timed_out. Call at most once.
  CommandResult wait(std::chrono::milliseconds timeout);

 private:
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  bool own_group_ = false;
  bool reaped_ = false;
  int out_fd_ = -1;
  std::string out_read_;       // stdout read by read_stdout_line, for wait()
  std::size_t out_lines_ = 0;  // how much of out_read_ read_stdout_line has returned
  int err_fd_ = -1;
  std::chrono::steady_clock::time_point start_;
};

// Runs argv to completion (at most `timeout`) and returns what it did.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The crew binary ctest names in $CREW_CLI, or "" when it is not set.
std::string crew_cli();

// Runs `crew args…` (the binary of crew_cli()) to completion, at most `timeout`.
CommandResult run_crew(std::vector<std::string> args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(100));

// A signal set of process `pid` from /proc/<pid>/status, bit (signo - 1) for each signal: "SigBlk"
// (blocked by its main thread), "ShdPnd" (pending for the whole process), "SigPnd" (pending for
// its main thread). 0 when it cannot be read (the process is gone).
unsigned long long signal_set(pid_t pid, std::string_view field);

// CPU time (user + system, all threads) that process `pid` has used so far, from /proc/<pid>/stat
// (clock-tick resolution, 10 ms here); zero when it cannot be read.
std::chrono::milliseconds cpu_time(pid_t pid);

// The bit of `signo` in a signal_set.
constexpr unsigned long long signal_bit(int signo) { return 1ULL << (signo - 1); }

}  // namespace crew::testing
