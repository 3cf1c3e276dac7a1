// crew-test-label: process
// What making a pool does to the host's own stdio: it must not wait on a stream another thread of
// the host holds (a thread blocked reading stdin holds stdin's lock).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

int twice(int x) { return 2 * x; }

// Runs `body` in a child process; returns its exit status, or -1 after killing it when it has not
// finished within `limit` (a hang).
template <class Body>
int run_in_child(std::chrono::seconds limit, Body body) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(body());
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(-child, SIGKILL);
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(HostStdioTest, PoolStartsWhileAnotherThreadIsBlockedReadingStdin) {
  const int status = run_in_child(std::chrono::seconds(20), [] {
    ::setpgid(0, 0);  // the parent kills the whole group on a hang, workers included
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0 || ::dup2(pipe_fds[0], STDIN_FILENO) < 0) return 10;
    std::thread reader([] {
      char line[64];
      (void)std::fgets(line, sizeof line, stdin);  // blocks holding stdin's lock
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let it block in read()
    int result = 0;
    {
      ProcessPool pool({.workers = 1, .warn_if_threads_running = false});
      result = pool.submit(twice, 21).get();
    }
    const char newline = '\n';
    (void)::write(pipe_fds[1], &newline, 1);  // releases the reader
    reader.join();
    return result == 42 ? 0 : 11;
  });
  EXPECT_EQ(status, 0) << (status == -1 ? "making the pool hung on stdin's lock" : "");
}

}  // namespace
}  // namespace crew
