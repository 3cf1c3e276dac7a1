// crew-test-label: process
// What crew says when the process limit (RLIMIT_NPROC, `ulimit -u`) refuses a process or thread it
// needs: which one could not be started (the zygote, a worker, the pool's dispatcher thread, a
// ThreadPool worker, the CLI's signal watcher) and why, naming the limit and its value — not a bare
// "Resource temporarily unavailable". The limit binds only a user without CAP_SYS_RESOURCE, so each
// case runs in a forked child that becomes a fresh uid (its own, so that no other process counts
// against the limit) and sets the limit there; the test skips when it cannot change uid.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "crew/errors.hpp"
#include "crew/process_pool.hpp"
#include "crew/thread_pool.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

int twice(int x) { return 2 * x; }

// A uid no other process uses: RLIMIT_NPROC counts every task of the real uid on the machine.
uid_t fresh_uid() { return 2'000'000'000U + static_cast<uid_t>(::getpid()); }

struct LimitedRun {
  bool skipped = false;  // this process cannot switch to another uid (not root)
  std::string text;      // what `body` returned
  int status = 0;        // the child's wait status
};

// Forks; the child drops to fresh_uid() (which drops every capability), sets RLIMIT_NPROC to
// `limit` and runs `body`, whose result comes back through a pipe (`body` gets its write end, for
// a program it execs). Waits at most 60 s.
LimitedRun run_limited(rlim_t limit, const std::function<std::string(int)>& body) {
  LimitedRun run;
  if (::geteuid() != 0) {
    run.skipped = true;
    return run;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << errno;
    return run;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    const uid_t uid = fresh_uid();
    std::string text;
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      text = "SKIP: cannot switch to a fresh uid";
    } else {
      const rlimit nproc{limit, limit};
      if (::setrlimit(RLIMIT_NPROC, &nproc) != 0) {
        text = "setrlimit failed";
      } else {
        try {
          text = body(fds[1]);
        } catch (const std::exception& error) {
          text = std::string("threw: ") + error.what();
        }
      }
    }
    [[maybe_unused]] const ssize_t written = ::write(fds[1], text.data(), text.size());
    ::_exit(0);  // no atexit handlers, no sanitizer report thread: the limit would refuse it
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd fd = {fds[0], POLLIN, 0};
    if (left <= 0ms || ::poll(&fd, 1, static_cast<int>(left.count())) == 0) {
      ADD_FAILURE() << "the limited child did not finish within 60 s";
      ::kill(pid, SIGKILL);
      break;
    }
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n > 0) {
      run.text.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  while (::waitpid(pid, &run.status, 0) < 0 && errno == EINTR) {
  }
  if (run.text.starts_with("SKIP: ")) run.skipped = true;
  return run;
}

#define SKIP_IF_CANNOT_LIMIT(run) \
  if ((run).skipped) GTEST_SKIP() << "needs root to run as a fresh uid under RLIMIT_NPROC"

TEST(ProcessLimitTest, ZygoteThatCannotBeForkedIsNamedWithTheLimit) {
  // 1: this process alone fills the limit, so the zygote's fork fails.
  const LimitedRun run = run_limited(1, [](int) {
    ProcessPool pool({.workers = 1});
    return std::string("started");
  });
  SKIP_IF_CANNOT_LIMIT(run);
  EXPECT_THAT(run.text, HasSubstr("threw: "));
  EXPECT_THAT(run.text, HasSubstr("cannot start the zygote process"));
  EXPECT_THAT(run.text, HasSubstr("Resource temporarily unavailable"));
  EXPECT_THAT(run.text, HasSubstr("RLIMIT_NPROC"));
  EXPECT_THAT(run.text, HasSubstr("is 1"));
}

TEST(ProcessLimitTest, DispatcherThreadThatCannotStartIsNamedWithTheLimit) {
  // 2: this process and the zygote; the pool's own thread is the third task.
  const LimitedRun run = run_limited(2, [](int) {
    ProcessPool pool({.workers = 1});
    return std::string("started");
  });
  SKIP_IF_CANNOT_LIMIT(run);
  EXPECT_THAT(run.text, HasSubstr("threw: "));
  EXPECT_THAT(run.text, HasSubstr("cannot start the pool's dispatcher thread"));
  EXPECT_THAT(run.text, HasSubstr("RLIMIT_NPROC"));
  EXPECT_THAT(run.text, HasSubstr("is 2"));
}

TEST(ProcessLimitTest, WorkerThatCannotBeClonedIsNamedWithTheLimit) {
  // The pool starts whole under a roomy limit; then the zygote's own limit is lowered to 1 (a
  // process may lower the limits of another of its uid) and its worker killed: the replacement's
  // clone is refused, whatever order the pool's threads run in.
  const LimitedRun run = run_limited(64, [](int) {
    ProcessPool pool({.workers = 1});
    if (pool.submit(twice, 21).get() != 42) return std::string("wrong answer");
    const pid_t worker = pool.stats().workers.at(0).pid;
    // The zygote and the workers (CLONE_PARENT) are children of the thread that made the pool.
    std::ifstream children("/proc/self/task/" + std::to_string(::gettid()) + "/children");
    pid_t zygote = 0;
    for (pid_t pid = 0; children >> pid;) {
      if (pid != worker) zygote = pid;
    }
    const rlimit one{1, 1};
    if (zygote == 0 || ::prlimit(zygote, RLIMIT_NPROC, &one, nullptr) != 0) {
      return std::string("cannot find or limit the zygote");
    }
    ::kill(worker, SIGKILL);
    // Until the pool has reaped it: a task submitted before would go to the dying worker.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (pool.stats().workers.at(0).alive) {
      if (std::chrono::steady_clock::now() > deadline) return std::string("worker never reaped");
      std::this_thread::sleep_for(1ms);
    }
    try {
      return "answer " + std::to_string(pool.submit(twice, 21).get());
    } catch (const BrokenPool& error) {
      return std::string("broken: ") + error.what();
    }
  });
  SKIP_IF_CANNOT_LIMIT(run);
  EXPECT_THAT(run.text, HasSubstr("broken: "));
  EXPECT_THAT(run.text, HasSubstr("cannot start a worker process (clone, in the zygote"));
  EXPECT_THAT(run.text, HasSubstr("RLIMIT_NPROC"));
  EXPECT_THAT(run.text, HasSubstr("is 1)")) << "the zygote's limit, not this process's 64";
}

TEST(ProcessLimitTest, ThreadPoolWorkerThatCannotStartIsNamedWithTheLimit) {
  const LimitedRun run = run_limited(1, [](int) {
    ThreadPool pool({.workers = 2});
    return std::string("started");
  });
  SKIP_IF_CANNOT_LIMIT(run);
  EXPECT_THAT(run.text, HasSubstr("threw: "));
  EXPECT_THAT(run.text, HasSubstr("cannot start a worker thread"));
  EXPECT_THAT(run.text, HasSubstr("RLIMIT_NPROC"));
  EXPECT_THAT(run.text, HasSubstr("is 1"));
}

TEST(ProcessLimitTest, CliSaysWhatItCouldNotStart) {
  if (testing::crew_cli().empty()) GTEST_SKIP() << "CREW_CLI is not set";
  // The other uid runs a copy in a directory it may enter: the build tree may sit under one it
  // may not (a fresh clone in a 0700 mktemp directory: exec failed with EACCES).
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "crew-limit-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir_template.data()), nullptr);
  const std::filesystem::path dir = dir_template;
  std::filesystem::permissions(
      dir, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
               std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
               std::filesystem::perms::others_exec);
  const std::string cli = (dir / "crew").string();
  std::filesystem::copy_file(testing::crew_cli(), cli);
  struct RemoveDir {
    std::filesystem::path dir;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } remove_dir{dir};
  // 1: the CLI's signal-watching thread cannot start; 2: then the zygote cannot.
  for (const rlim_t limit : {1, 2}) {
    const LimitedRun run = run_limited(limit, [&cli](int out) {
      // exec, not fork: a second process of this uid would itself count against the limit.
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      ::execl(cli.c_str(), cli.c_str(), "primes", "--engine", "process", "--below", "100",
              static_cast<char*>(nullptr));
      return std::string("exec failed: ") + std::strerror(errno);
    });
    SKIP_IF_CANNOT_LIMIT(run);
    ASSERT_TRUE(WIFEXITED(run.status)) << "limit " << limit << ": " << run.text;
    EXPECT_EQ(WEXITSTATUS(run.status), 1) << "limit " << limit;
    EXPECT_THAT(run.text, HasSubstr("crew: error: cannot start the ")) << "limit " << limit;
    EXPECT_THAT(run.text, HasSubstr("RLIMIT_NPROC")) << "limit " << limit;
    EXPECT_THAT(run.text, HasSubstr("is " + std::to_string(limit))) << "limit " << limit;
  }
}

}  // namespace
}  // namespace crew
