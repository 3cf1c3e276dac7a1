// crew-test-label: process
// ProcessPool against hostile workloads: arguments and results larger than a socket buffer, a task
// that hangs among quick ones, a worker whose socket leaks to a grandchild, an initializer that
// never returns, descriptor exhaustion, garbage on a worker's socket, and stops racing replies.
// Scenarios that used to hang run in a forked child with a deadline, so a regression fails the
// test instead of stalling it until ctest's timeout.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

int twice(int x) { return 2 * x; }
std::string echo(const std::string& text) { return text; }
std::size_t length(const std::string& text) { return text.size(); }
std::string make_text(std::size_t size) { return std::string(size, 'r'); }
// Sleeps the whole time: a worker's 100 ms SIGALRM tick cuts a single sleep() short.
void sleep_fully(std::chrono::seconds how_long) {
  const auto until = Clock::now() + how_long;
  while (Clock::now() < until) std::this_thread::sleep_until(until);
}
int sleep_then(int seconds_to_sleep) {
  sleep_fully(seconds(seconds_to_sleep));
  return seconds_to_sleep;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Runs `body` in a forked child and waits at most `limit` for it. The child's verdict comes back
// through a pipe: "" is success, anything else is the failure. The child is SIGKILLed at the
// limit (its pool's workers and zygote then exit on their own: they watch for their parent).
std::string run_in_child(std::chrono::seconds limit, const std::function<std::string()>& body) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(pipe_fds[0]);
    std::string verdict;
    try {
      verdict = body();
    } catch (const std::exception& error) {
      verdict = std::string("threw: ") + error.what();
    }
    if (verdict.empty() && testing::count_children() != 0) verdict = "left a child process";
    [[maybe_unused]] const ssize_t ignored = ::write(pipe_fds[1], verdict.data(), verdict.size());
    std::fflush(nullptr);
    ::_exit(verdict.empty() ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  const auto deadline = Clock::now() + limit;
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(pid, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::string verdict;
  if (reaped == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    verdict = "did not finish within " + std::to_string(limit.count()) + " s";
  } else {
    char buffer[4096];
    ssize_t got;
    while ((got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) verdict.append(buffer, got);
    if (verdict.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      verdict = "child ended with status " + std::to_string(status);
    }
  }
  ::close(pipe_fds[0]);
  return verdict;
}

// Makes every worker of `pool` answer once and take the pipelining path for short tasks.
void warm_up(ProcessPool& pool) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 64; ++i) futures.push_back(pool.submit(twice, i));
  for (auto& future : futures) (void)future.get();
}

// --- item 3: the dispatcher never blocks on a socket ---------------------------------------------

TEST(ProcessPoolHostileTest, LargeArgumentsAmongSmallOnesDoNotDeadlock) {
  const std::string verdict = run_in_child(seconds(90), [] {
    ProcessPool pool({.workers = 1});
    std::vector<std::string> items;
    for (int i = 0; i < 100; ++i) items.push_back("small " + std::to_string(i));
    for (int i = 0; i < 8; ++i) items.push_back(std::string(16 << 20, static_cast<char>('a' + i)));
    const auto results = pool.map(echo, items, {.chunksize = 1});
    return results == items ? std::string() : std::string("results differ from the input");
  });
  EXPECT_EQ(verdict, "");
}

TEST(ProcessPoolHostileTest, LargeResultThenLargeArgumentDoNotDeadlock) {
  const std::string verdict = run_in_child(seconds(90), [] {
    ProcessPool pool({.workers = 1});
    warm_up(pool);
    constexpr std::size_t kSize = 64 << 20;
    auto result = pool.submit(make_text, kSize);
    auto argument = pool.submit(length, std::string(kSize, 'a'));
    if (result.get().size() != kSize) return std::string("wrong result size");
    if (argument.get() != kSize) return std::string("wrong argument size");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

TEST(ProcessPoolHostileTest, HangingTaskBeforeLargeArgumentStillTimesOut) {
  const std::string verdict = run_in_child(seconds(90), [] {
    ProcessPool pool({.workers = 1, .task_timeout = milliseconds(2000)});
    warm_up(pool);
    auto hang = pool.submit(sleep_then, 3600);
    auto argument = pool.submit(length, std::string(16 << 20, 'a'));
    try {
      (void)hang.get();
      return std::string("the hanging task returned");
    } catch (const TaskTimeout&) {
    }
    if (argument.get() != (16u << 20)) return std::string("wrong argument size");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

// In a worker: crew's socket, its only one.
int own_crew_socket() {
  int socket_fd = -1;
  DIR* fds = ::opendir("/proc/self/fd");
  while (dirent* entry = ::readdir(fds)) {
    char target[64] = {};
    const std::string path = std::string("/proc/self/fd/") + entry->d_name;
    if (::readlink(path.c_str(), target, sizeof target - 1) > 0 &&
        std::string(target).rfind("socket:", 0) == 0) {
      socket_fd = std::atoi(entry->d_name);
    }
  }
  ::closedir(fds);
  return socket_fd;
}

// A task that writes a frame header announcing 2^62 bytes to its own socket, then waits.
int write_garbage_frame(int) {
  const int socket_fd = own_crew_socket();
  const std::uint32_t words[4] = {5, 0, 0, 1u << 30};  // kind kReply, reserved, size 2^62
  [[maybe_unused]] const ssize_t ignored = ::write(socket_fd, words, sizeof words);
  for (;;) ::pause();
}

// A task that writes 300 well-formed "ready" frames to its own socket before its real reply: more
// frames at once than the dispatcher takes from one worker per turn.
int write_many_ready_frames(int x) {
  const int socket_fd = own_crew_socket();
  std::vector<std::uint32_t> words;
  for (int i = 0; i < 300; ++i) words.insert(words.end(), {3, 0, 0, 0});  // kReady, size 0
  [[maybe_unused]] const ssize_t ignored =
      ::write(socket_fd, words.data(), words.size() * sizeof(std::uint32_t));
  return 2 * x;
}

// The frames left in the buffer when a worker's turn ends raise no epoll event: they must still
// be read (the reply behind them once waited forever).
TEST(ProcessPoolHostileTest, FramesBufferedPastAWorkersTurnAreStillRead) {
  const std::string verdict = run_in_child(seconds(30), [] {
    ProcessPool pool({.workers = 1});
    if (pool.submit(write_many_ready_frames, 21).get() != 42) return std::string("wrong result");
    if (pool.submit(twice, 4).get() != 8) return std::string("wrong second result");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

TEST(ProcessPoolHostileTest, GarbageFrameFailsOnlyThatWorkersTask) {
  ProcessPool pool({.workers = 2});
  std::vector<Future<int>> futures;
  for (int i = 0; i < 100; ++i) {
    futures.push_back(i == 10 ? pool.submit(write_garbage_frame, i) : pool.submit(twice, i));
  }
  for (int i = 0; i < 100; ++i) {
    if (i == 10) {
      try {
        (void)futures[i].get();
        ADD_FAILURE() << "the garbage task returned";
      } catch (const WorkerCrashed& error) {
        EXPECT_NE(lower(error.what()).find("protocol"), std::string::npos) << error.what();
      }
    } else {
      EXPECT_EQ(futures[i].get(), 2 * i);
    }
  }
  EXPECT_EQ(pool.broken_reason(), "");
}

// --- item 4: a slow task never holds back queued ones while a worker idles -----------------------

int hang_on_zero(int x) {
  if (x == 0) sleep_fully(seconds(3600));
  return x;
}

TEST(ProcessPoolHostileTest, HangingTaskDoesNotHoldBackQuickOnes) {
  const std::string verdict = run_in_child(seconds(60), [] {
    ProcessPool pool({.workers = 4});
    warm_up(pool);
    std::vector<int> items(12);
    std::iota(items.begin(), items.end(), 0);
    std::size_t quick = 0;
    const auto start = Clock::now();
    for (const int value : pool.imap_unordered(hang_on_zero, items, {.chunksize = 1})) {
      if (value == 0) return std::string("the hanging task returned");
      if (++quick == 11) {
        // Leaving the loop waits for running chunks; the hanging one is ended here instead.
        pool.terminate();
        break;
      }
    }
    if (Clock::now() - start > seconds(20)) return std::string("quick tasks were held back");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

// --- item 7: a worker ends with its process, not with its stream ---------------------------------

// Forks a child that holds the worker's socket (fork without exec keeps every descriptor) and
// sleeps; returns its pid.
int fork_socket_holder(int sleep_seconds) {
  const pid_t child = ::fork();
  if (child == 0) {
    ::sleep(static_cast<unsigned>(sleep_seconds));
    ::_exit(0);
  }
  return static_cast<int>(child);
}

TEST(ProcessPoolHostileTest, GrandchildHoldingWorkerSocketDoesNotStallPool) {
  // Orphans re-parent to this process, so the test can reap the socket holder.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  pid_t holder = 0;
  {
    ProcessPool pool({.workers = 1, .max_tasks_per_child = 1});
    holder = pool.submit(fork_socket_holder, 20).get();
    ASSERT_GT(holder, 0);
    const auto start = Clock::now();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(pool.submit(twice, i).get(), 2 * i);
    EXPECT_LT(Clock::now() - start, seconds(10)) << "the pool waited for the holder's sleep";
  }
  ::kill(holder, SIGKILL);
  // The holder's parent (the retired worker) is gone: it is this process's child now.
  int status = 0;
  EXPECT_EQ(::waitpid(holder, &status, 0), holder);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

// --- item 9: shutdown, terminate and the destructor are bounded ----------------------------------

TEST(ProcessPoolHostileTest, HangingInitializerDoesNotHangDestructor) {
  const std::string verdict = run_in_child(seconds(60), [] {
    const auto start = Clock::now();
    {
      ProcessPool pool({.workers = 2, .initializer = [] { sleep_fully(seconds(3600)); }});
    }
    if (Clock::now() - start > seconds(15)) return std::string("the destructor took over 15 s");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

TEST(ProcessPoolHostileTest, HangingInitializerWithQueuedWorkDoesNotHangDestructor) {
  const std::string verdict = run_in_child(seconds(60), [] {
    const auto start = Clock::now();
    Future<int> queued;
    {
      ProcessPool pool({.workers = 2, .initializer = [] { sleep_fully(seconds(3600)); }});
      queued = pool.submit(twice, 1);
    }
    if (Clock::now() - start > seconds(15)) return std::string("the destructor took over 15 s");
    try {
      (void)queued.get();
      return std::string("the queued task ran");
    } catch (const BrokenPool& error) {
      if (std::string(error.what()).find("initializer") == std::string::npos) {
        return std::string("unclear error: ") + error.what();
      }
    }
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

TEST(ProcessPoolHostileTest, HangingInitializerDoesNotHangTerminate) {
  const std::string verdict = run_in_child(seconds(60), [] {
    ProcessPool pool({.workers = 2, .initializer = [] { sleep_fully(seconds(3600)); }});
    const auto start = Clock::now();
    pool.terminate();
    if (Clock::now() - start > seconds(15)) return std::string("terminate took over 15 s");
    return std::string();
  });
  EXPECT_EQ(verdict, "");
}

// --- item 10: out of descriptors -----------------------------------------------------------------

std::size_t open_descriptors() {
  std::size_t count = 0;
  DIR* fds = ::opendir("/proc/self/fd");
  while (::readdir(fds) != nullptr) ++count;
  ::closedir(fds);
  return count - 3;  // ".", ".." and the directory itself
}

TEST(ProcessPoolHostileTest, DescriptorExhaustionBreaksPoolClearlyAndReapsEveryChild) {
#if defined(__SANITIZE_ADDRESS__)
  // The ASan build also runs UBSan, whose check of every virtual call probes the object's memory
  // through a pipe: with no descriptor left that probe fails, and it reports an "invalid vptr"
  // on a sound object (seen in the library's own make_error and in Future's destructor, 1 run in
  // ~20). The release build runs this test.
  GTEST_SKIP() << "UBSan's vptr check needs free descriptors itself";
#endif
  const std::string verdict = run_in_child(seconds(60), [] {
    std::mutex mu;
    std::vector<std::string> logs;
    rlimit old{};
    ::getrlimit(RLIMIT_NOFILE, &old);
    rlimit tight = old;
    // Room for the pool's own four descriptors and a few workers, not for eight.
    tight.rlim_cur = open_descriptors() + 10;
    ::setrlimit(RLIMIT_NOFILE, &tight);
    // Errors are read once the limit is lifted: the sanitizers' checks of a polymorphic call
    // (what()) need descriptors themselves.
    // Likewise the pool and the futures are destroyed only after the limit is lifted (a virtual
    // destructor is such a call: UBSan once reported an "invalid vptr" there, at the limit).
    std::vector<std::exception_ptr> errors;
    std::string reason;
    std::optional<ProcessPool> pool;
    std::vector<Future<int>> futures;
    try {
      ProcessPoolOptions options;
      options.workers = 8;
      options.on_log = [&](std::string_view line) {
        std::lock_guard lock(mu);
        logs.emplace_back(line);
      };
      pool.emplace(std::move(options));
      for (int i = 0; i < 50; ++i) futures.push_back(pool->submit(twice, i));
      for (auto& future : futures) {
        try {
          (void)future.get();
        } catch (...) {
          errors.push_back(std::current_exception());
        }
      }
      // Every spawn reply has come (or the pool broke first): wait for the reason.
      const auto deadline = Clock::now() + seconds(20);
      while (pool->broken_reason().empty() && Clock::now() < deadline) {
        std::this_thread::sleep_for(milliseconds(10));
      }
      reason = pool->broken_reason();
    } catch (...) {
      errors.push_back(std::current_exception());
    }
    ::setrlimit(RLIMIT_NOFILE, &old);
    futures.clear();
    pool.reset();
    std::string error = reason;
    for (const auto& failure : errors) {
      try {
        std::rethrow_exception(failure);
      } catch (const BrokenPool& broken) {
        if (error.empty()) error = broken.what();
      } catch (const std::system_error& failed) {
        if (error.empty()) error = failed.what();
      }
    }
    if (lower(error).find("too many open files") == std::string::npos ||
        error.find("RLIMIT_NOFILE") == std::string::npos) {
      return "error does not name the limit: '" + error + "'";
    }
    std::lock_guard lock(mu);
    for (const auto& line : logs) {
      if (line.find("dispatcher failed") != std::string::npos ||
          line.find("Input/output error") != std::string::npos) {
        return "log: " + line;
      }
    }
    return std::string();  // run_in_child checks that no child is left
  });
  EXPECT_EQ(verdict, "");
}

// --- item 13: a stop fails only the stopped map's tasks ------------------------------------------

int quick(int x) { return x; }

TEST(ProcessPoolHostileTest, TaskAfterStoppedMapNeverLandsOnStoppedWorker) {
  ProcessPool pool({.workers = 2});
  std::vector<int> items(5000);
  std::iota(items.begin(), items.end(), 0);
  for (int round = 0; round < 30; ++round) {
    std::stop_source stop;
    std::size_t seen = 0;
    try {
      for (const int value :
           pool.imap_unordered(quick, items, {.chunksize = 1, .stop = stop.get_token()})) {
        (void)value;
        if (++seen == 200) stop.request_stop();
      }
    } catch (const Cancelled&) {
    }
    ASSERT_EQ(pool.submit(twice, round).get(), 2 * round) << "round " << round;
  }
}

}  // namespace
}  // namespace crew
