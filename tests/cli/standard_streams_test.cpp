// Tests of the crew command when its standard streams cannot be written: stderr closed, full or a
// pipe nobody reads must never abort it (usage errors still exit 2); stdout that loses the answer
// is a failure (exit 1, a line on stderr when it can), as coreutils' close_stdout does it. Each
// test runs the binary named by $CREW_CLI in a child process with the streams set up below.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <vector>

#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

extern char** environ;

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// What one of the child's descriptors 1 and 2 is.
enum class Stream {
  kPipe,        // a pipe this test reads
  kClosed,      // not open at all (`>&-`)
  kFull,        // /dev/full: every write fails with ENOSPC
  kBrokenPipe,  // a pipe whose read end is closed: EPIPE, or SIGPIPE if not ignored
};

struct Outcome {
  int exit_code = -1;   // -1 when a signal ended it
  int term_signal = 0;  // the signal that ended it, or 0
  std::string out;      // what it wrote on a kPipe stdout
  std::string err;      // what it wrote on a kPipe stderr
};

void check(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

// Runs `crew args…` with stdout and stderr as asked, stdin on /dev/null (or closed), through
// /bin/sh so that SIGPIPE can be ignored across the exec when `ignore_sigpipe` (as a shell with
// `trap '' PIPE`, or a Python parent, leaves it). Reads the kPipe streams until they close; kills
// the child after 60 s.
Outcome run_with_streams(const std::vector<std::string>& args, Stream out, Stream err,
                         bool ignore_sigpipe = false, bool close_stdin = false) {
  posix_spawn_file_actions_t actions;
  check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init");
  if (close_stdin) {
    check(posix_spawn_file_actions_addclose(&actions, 0), "addclose");
  } else {
    check(posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0), "addopen");
  }
  int read_ends[2] = {-1, -1};
  std::vector<int> to_close;
  for (int fd : {1, 2}) {
    const Stream stream = fd == 1 ? out : err;
    if (stream == Stream::kClosed) {
      check(posix_spawn_file_actions_addclose(&actions, fd), "addclose");
    } else if (stream == Stream::kFull) {
      check(posix_spawn_file_actions_addopen(&actions, fd, "/dev/full", O_WRONLY, 0), "addopen");
    } else {
      int pipe_fds[2];
      if (pipe2(pipe_fds, O_CLOEXEC) != 0) check(errno, "pipe2");
      check(posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], fd), "adddup2");
      to_close.push_back(pipe_fds[1]);
      if (stream == Stream::kBrokenPipe) {
        close(pipe_fds[0]);  // before the spawn: the child's first write meets no reader
      } else {
        read_ends[fd - 1] = pipe_fds[0];
      }
    }
  }
  posix_spawnattr_t attr;
  check(posix_spawnattr_init(&attr), "posix_spawnattr_init");
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  check(posix_spawnattr_setsigmask(&attr, &empty), "setsigmask");
  check(posix_spawnattr_setsigdefault(&attr, &defaults), "setsigdefault");
  check(posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
        "setflags");

  std::vector<std::string> argv = {
      "/bin/sh", "-c", ignore_sigpipe ? "trap '' PIPE; exec \"$0\" \"$@\"" : "exec \"$0\" \"$@\"",
      crew_cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> pointers;
  for (std::string& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, "/bin/sh", &actions, &attr, pointers.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  for (int fd : to_close) close(fd);
  check(spawned, "posix_spawn");

  Outcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (read_ends[0] >= 0 || read_ends[1] >= 0) {
    pollfd fds[2] = {{read_ends[0], POLLIN, 0}, {read_ends[1], POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    const int ready = poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        (i == 0 ? outcome.out : outcome.err).append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(read_ends[i]);
        read_ends[i] = -1;
      }
    }
  }
  for (int& fd : read_ends) {
    if (fd >= 0) {
      kill(pid, SIGKILL);  // it outlived the deadline
      close(fd);
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) outcome.term_signal = WTERMSIG(status);
  return outcome;
}

class StandardStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
};

// --- stderr cannot be written: never an abort, the usual exit code ------------------------------

TEST_F(StandardStreamsTest, UsageErrorWithStderrClosedExitsTwo) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"primes", "--below", "-1"}, {"bogus"}, {"primes", "--bogus"}}) {
    const Outcome r = run_with_streams(args, Stream::kPipe, Stream::kClosed);
    EXPECT_EQ(r.term_signal, 0) << args[0] << " " << args.back();
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args.back();
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(StandardStreamsTest, UsageErrorWithStderrFullOrBrokenExitsTwo) {
  for (const Stream err : {Stream::kFull, Stream::kBrokenPipe}) {
    const Outcome r = run_with_streams({"primes", "--workers", "0"}, Stream::kPipe, err,
                                       /*ignore_sigpipe=*/true);
    EXPECT_EQ(r.term_signal, 0);
    EXPECT_EQ(r.exit_code, 2);
  }
}

TEST_F(StandardStreamsTest, FailureWithStderrFullExitsOne) {
  // A run that fails after it started: "1 of 1 URLs failed" goes to stderr, which is full (port 1
  // on loopback refuses the connection).
  const Outcome r = run_with_streams({"fetch", "http://127.0.0.1:1/", "--connect-timeout", "5s"},
                                     Stream::kPipe, Stream::kFull);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("127.0.0.1:1/")) << "the table still reaches stdout";
}

TEST_F(StandardStreamsTest, DiagnosticsThatCannotBeWrittenDoNotChangeTheOutcome) {
  // serve writes its "listening" line on stderr before READY on stdout: a closed stderr must not
  // stop the server. Ctrl-C is not needed: the test only reads READY, then kills it.
  ChildProcess child({"/bin/sh", "-c", "exec \"$0\" serve 2>&-", crew_cli()});
  const std::optional<std::string> ready = child.read_stdout_line(30s);
  ASSERT_TRUE(ready.has_value()) << "no READY line: " << child.wait(10s).err;
  EXPECT_THAT(*ready, ::testing::StartsWith("READY "));
  // The successful answer of a run whose stderr is closed is still 0.
  const Outcome r = run_with_streams({"primes", "--below", "100"}, Stream::kPipe, Stream::kClosed);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("answer: 1060\n"));
}

TEST_F(StandardStreamsTest, ClosedStderrIsNotTakenByADescriptorCrewOpens) {
  // Without a placeholder on descriptor 2, the server's first eventfd or socket would take it, and
  // the diagnostics would be written into that.
  ChildProcess child({"/bin/sh", "-c", "exec \"$0\" serve 2>&-", crew_cli()});
  const std::optional<std::string> ready = child.read_stdout_line(30s);
  ASSERT_TRUE(ready.has_value()) << "no READY line";
  char target[256] = {};
  const std::string link = "/proc/" + std::to_string(child.pid()) + "/fd/2";
  const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
  ASSERT_GT(n, 0) << link;
  EXPECT_STREQ(target, "/dev/null");
}

// --- stdout cannot be written: the answer is lost, so the run failed -----------------------------

struct StdoutCase {
  const char* name;
  std::vector<std::string> args;

  // What ctest shows for the case: the command line, not 32 bytes of hex.
  friend void PrintTo(const StdoutCase& c, std::ostream* os) {
    *os << "crew";
    for (const std::string& arg : c.args) *os << ' ' << arg;
  }
};

class StdoutLostTest : public StandardStreamsTest,
                       public ::testing::WithParamInterface<StdoutCase> {};

TEST_P(StdoutLostTest, ClosedStdoutExitsOneWithAMessage) {
  const Outcome r = run_with_streams(GetParam().args, Stream::kClosed, Stream::kPipe);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("crew: error: cannot write to stdout"));
}

// The reason is the write's own ("a write failed and the output was lost" said nothing when the
// answer had been flushed, and failed, before the end).
TEST_P(StdoutLostTest, FullStdoutExitsOneWithAMessage) {
  const Outcome r = run_with_streams(GetParam().args, Stream::kFull, Stream::kPipe);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("crew: error: cannot write to stdout: No space left on device"));
}

TEST_P(StdoutLostTest, BrokenPipeWithSigpipeIgnoredExitsOne) {
  const Outcome r = run_with_streams(GetParam().args, Stream::kBrokenPipe, Stream::kPipe,
                                     /*ignore_sigpipe=*/true);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("crew: error: cannot write to stdout: Broken pipe"));
}

TEST_P(StdoutLostTest, BrokenPipeEndsTheRunBySigpipeOrExitOne) {
  // SIGPIPE at its default action ends a writer to a closed pipe as it ends `yes | head`: never
  // a success.
  const Outcome r = run_with_streams(GetParam().args, Stream::kBrokenPipe, Stream::kPipe);
  EXPECT_TRUE(r.term_signal == SIGPIPE || r.exit_code == 1)
      << "exit " << r.exit_code << ", signal " << r.term_signal << ": " << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Commands, StdoutLostTest,
    ::testing::Values(
        StdoutCase{"Primes", {"primes", "--below", "1000"}},
        StdoutCase{"PrimesJson", {"primes", "--below", "1000", "--json"}},
        StdoutCase{"PrimesProcess",
                   {"primes", "--below", "1000", "--engine", "process", "--workers", "1"}},
        StdoutCase{"Fetch", {"fetch", "--local", "2", "--latency", "0"}},
        StdoutCase{"Bench",
                   {"bench", "synthetic", "--cpu-us", "1", "--tasks", "4", "--max-workers", "1",
                    "--repeat", "1", "--engines", "thread"}},
        StdoutCase{"Demo", {"demo", "--below", "100"}}, StdoutCase{"Help", {"--help"}},
        StdoutCase{"CommandHelp", {"fetch", "--help"}}, StdoutCase{"Version", {"--version"}}),
    [](const ::testing::TestParamInfo<StdoutCase>& info) { return std::string(info.param.name); });

TEST_F(StandardStreamsTest, ServeWithStdoutClosedFailsAtItsReadyLine) {
  // READY is the one thing serve says on stdout: a caller waiting for it would wait forever.
  const Outcome r = run_with_streams({"serve"}, Stream::kClosed, Stream::kPipe);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot write to stdout"));
}

TEST_F(StandardStreamsTest, UsageErrorWithStdoutClosedIsStillAUsageError) {
  const Outcome r = run_with_streams({"primes", "--below", "x"}, Stream::kClosed, Stream::kPipe);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--below"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("stdout")));
}

TEST_F(StandardStreamsTest, BothStreamsClosedNeverAborts) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"primes", "--below", "100"}, {"primes", "--below", "-1"}}) {
    const Outcome r = run_with_streams(args, Stream::kClosed, Stream::kClosed);
    EXPECT_EQ(r.term_signal, 0);
    EXPECT_EQ(r.exit_code, args.back() == "-1" ? 2 : 1);
  }
}

TEST_F(StandardStreamsTest, FetchFromAClosedStdinSaysItCannotReadIt) {
  // It said "the input had only blank lines and # comments": a closed stdin is not an empty one.
  const Outcome r = run_with_streams({"fetch"}, Stream::kPipe, Stream::kPipe,
                                     /*ignore_sigpipe=*/false, /*close_stdin=*/true);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot read stdin"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("blank lines")));
}

}  // namespace
}  // namespace crew::testing
