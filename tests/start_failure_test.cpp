// The words crew uses when a process or thread cannot be started (src/start_failure.hpp): the
// limit it names must be one that binds the process that failed.
#include "../src/start_failure.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "support/leak_guard.hpp"

namespace crew::detail {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A child that waits to be killed, so that its limits can be set and read with prlimit.
class WaitingChild {
 public:
  WaitingChild() : pid_(::fork()) {
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~WaitingChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  WaitingChild(const WaitingChild&) = delete;
  WaitingChild& operator=(const WaitingChild&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

// In a child that is no longer root (as root: uid 65534, which drops every capability), so that
// the limit binds it; the text comes back through a pipe (prlimit cannot read another user's
// process without CAP_SYS_RESOURCE).
TEST(StartFailureTest, NamesTheProcessLimitAndItsValue) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    const rlimit limit{.rlim_cur = 7, .rlim_max = 7};
    if (::setrlimit(RLIMIT_NPROC, &limit) != 0) ::_exit(2);
    if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) ::_exit(3);
    const std::string text = describe_start_failure("a worker process", "fork", EAGAIN);
    const bool written =
        ::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::_exit(written ? 0 : 4);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[512];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_THAT(text, HasSubstr("RLIMIT_NPROC, this user's limit on processes and threads, is 7"))
      << text;
}

// Root (and CAP_SYS_RESOURCE or CAP_SYS_ADMIN) is exempt from RLIMIT_NPROC: a finite limit there
// did not refuse the fork, so the message must not blame it (it said "RLIMIT_NPROC, this user's
// limit on processes and threads, is 7" for a root process).
TEST(StartFailureTest, DoesNotBlameTheProcessLimitForAProcessItDoesNotBind) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, which RLIMIT_NPROC does not bind";
  WaitingChild child;
  ASSERT_GT(child.pid(), 0);
  rlimit limit{};
  ASSERT_EQ(::prlimit(child.pid(), RLIMIT_NPROC, nullptr, &limit), 0);
  limit.rlim_cur = 7;
  ASSERT_EQ(::prlimit(child.pid(), RLIMIT_NPROC, &limit, nullptr), 0);
  const std::string text = describe_start_failure("a worker process", "fork", EAGAIN, child.pid());
  EXPECT_THAT(text, Not(HasSubstr("limit on processes and threads, is 7"))) << text;
  EXPECT_THAT(text, HasSubstr("pids.max")) << text;
  EXPECT_THAT(text, HasSubstr("Resource temporarily unavailable")) << text;
}

TEST(StartFailureTest, OtherErrorsNameNoLimit) {
  const std::string text = describe_start_failure("a worker thread", "std::thread", ENOMEM);
  EXPECT_THAT(text, Not(HasSubstr("RLIMIT_NPROC"))) << text;
  EXPECT_THAT(text, HasSubstr("cannot start a worker thread (std::thread)")) << text;
}

}  // namespace
}  // namespace crew::detail
