// crew-test-label: process concurrency
// ProcessPool failure semantics: crashed workers, timeouts, broken pools, worker retirement,
// a parent killed mid-map, and no zombie left behind (the leak guard fails any test that leaves a
// child process). Time bounds are generous; the tight figures are in bench/.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

// A worker's SIGSEGV must kill it, as in production: under AddressSanitizer the runtime would
// catch it and exit with status 1 instead.
extern "C" const char* __asan_default_options() { return "handle_segv=0"; }

namespace crew {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

int my_pid() { return static_cast<int>(::getpid()); }
int twice(int x) { return 2 * x; }

// Item 13 dies in the way `how` says; the others return their double.
int die_on_13(int x) {
  if (x == 13) ::raise(SIGKILL);
  return 2 * x;
}
int segv_on_13(int x) {
  if (x == 13) ::raise(SIGSEGV);
  return 2 * x;
}
int exit_on_13(int x) {
  if (x == 13) ::_exit(3);
  return 2 * x;
}
int sleep_forever(int) {
  for (;;) ::pause();
}

// The test process's live children (zombies excluded) by pid.
std::set<int> live_children() {
  std::set<int> pids;
  std::ifstream children("/proc/self/task/" + std::to_string(::getpid()) + "/children");
  int pid = 0;
  while (children >> pid) pids.insert(pid);
  return pids;
}

bool process_exists(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

void expect_worker_crashed(const std::exception_ptr& error, int signo, int exit_code) {
  try {
    std::rethrow_exception(error);
  } catch (const WorkerCrashed& crashed) {
    EXPECT_GT(crashed.pid(), 0);
    EXPECT_EQ(crashed.signal(), signo) << crashed.what();
    EXPECT_EQ(crashed.exit_code(), exit_code) << crashed.what();
    const std::string text = crashed.what();
    EXPECT_NE(text.find(std::to_string(crashed.pid())), std::string::npos) << text;
    if (signo != 0) {
      EXPECT_NE(text.find(std::string("SIG") + ::sigabbrev_np(signo)), std::string::npos) << text;
    } else {
      EXPECT_NE(text.find("exited with status " + std::to_string(exit_code)), std::string::npos)
          << text;
    }
  } catch (const std::exception& other) {
    ADD_FAILURE() << "expected crew::WorkerCrashed, got " << describe_exception(error);
  }
}

template <class Fn>
void check_crash_fails_only_its_item(Fn fn, int signo, int exit_code) {
  ProcessPool pool({.workers = 2});
  const std::vector<int> input = [] {
    std::vector<int> v(40);
    for (int i = 0; i < 40; ++i) v[static_cast<std::size_t>(i)] = i;
    return v;
  }();
  const auto outcomes = pool.map_outcomes(fn, input, {.chunksize = 1});
  ASSERT_EQ(outcomes.size(), input.size());
  for (std::size_t i = 0; i < input.size(); ++i) {
    if (i == 13) {
      ASSERT_FALSE(outcomes[i].has_value());
      expect_worker_crashed(outcomes[i].error(), signo, exit_code);
    } else {
      ASSERT_TRUE(outcomes[i].has_value()) << i << ": " << outcomes[i].error_message();
      EXPECT_EQ(outcomes[i].value(), 2 * input[i]);
    }
  }
  const ProcessPoolStats stats = pool.stats();
  EXPECT_EQ(stats.crashes, 1u);
  EXPECT_EQ(stats.replacements, 1u);
  EXPECT_EQ(pool.submit(twice, 5).get(), 10) << "the pool stays usable";
}

TEST(ProcessPoolFailureTest, WorkerKilledFailsOnlyItsTask) {
  check_crash_fails_only_its_item(die_on_13, SIGKILL, -1);
}

TEST(ProcessPoolFailureTest, WorkerSegfaultFailsOnlyItsTask) {
  check_crash_fails_only_its_item(segv_on_13, SIGSEGV, -1);
}

TEST(ProcessPoolFailureTest, WorkerExitFailsOnlyItsTask) {
  check_crash_fails_only_its_item(exit_on_13, 0, 3);
}

TEST(ProcessPoolFailureTest, CrashedWorkerIsReplacedByANewProcess) {
  ProcessPool pool({.workers = 1});
  const int first = pool.submit(my_pid).get();
  auto crashed = pool.submit(die_on_13, 13);
  EXPECT_THROW((void)crashed.get(), WorkerCrashed);
  const int second = pool.submit(my_pid).get();
  EXPECT_NE(first, second);
  EXPECT_FALSE(process_exists(first));
}

TEST(ProcessPoolFailureTest, ImapUnorderedShowsEveryOtherItem) {
  ProcessPool pool({.workers = 2});
  std::multiset<int> seen;
  try {
    for (int x : pool.imap_unordered(segv_on_13, std::views::iota(0, 30), {.chunksize = 1})) {
      seen.insert(x);
    }
    FAIL() << "imap_unordered did not throw the crash";
  } catch (const WorkerCrashed& crashed) {
    EXPECT_EQ(crashed.signal(), SIGSEGV);
  }
  std::multiset<int> expected;
  for (int i = 0; i < 30; ++i) {
    if (i != 13) expected.insert(2 * i);
  }
  EXPECT_EQ(seen, expected);
}

TEST(ProcessPoolFailureTest, MapThrowsTheLowestPositionCrash) {
  ProcessPool pool({.workers = 2});
  // Position 13 crashes late; position 20 throws at once: map must report position 13.
  auto fn = [](int x) {
    if (x == 13) {
      ::usleep(200'000);
      ::raise(SIGKILL);
    }
    if (x == 20) throw std::runtime_error("item 20");
    return x;
  };
  try {
    (void)pool.map(fn, std::views::iota(0, 40), {.chunksize = 1});
    FAIL() << "map did not throw";
  } catch (const WorkerCrashed& crashed) {
    EXPECT_EQ(crashed.signal(), SIGKILL);
  }
  EXPECT_EQ(pool.map(twice, std::vector<int>{1, 2, 3}), (std::vector<int>{2, 4, 6}));
}

TEST(ProcessPoolFailureTest, TaskTimeoutStopsAndReplacesTheWorker) {
  ProcessPool pool({.workers = 1, .task_timeout = milliseconds(200)});
  const int before = pool.submit(my_pid).get();
  const auto start = Clock::now();
  auto stuck = pool.submit(sleep_forever, 0);
  try {
    (void)stuck.get();
    FAIL() << "get() did not throw";
  } catch (const TaskTimeout& timeout) {
    const std::string text = timeout.what();
    EXPECT_NE(text.find("200 ms"), std::string::npos) << text;
    EXPECT_NE(text.find(std::to_string(before)), std::string::npos) << text;
  }
  const auto took = Clock::now() - start;
  EXPECT_GE(took, milliseconds(200));
  EXPECT_LT(took, seconds(5));
  const int after = pool.submit(my_pid).get();
  EXPECT_NE(before, after) << "the stopped worker is replaced";
  EXPECT_EQ(pool.stats().timeouts, 1u);
  EXPECT_EQ(pool.stats().crashes, 0u) << "a timeout is not a crash";
}

TEST(ProcessPoolFailureTest, TaskTimeoutEscalatesToSigkill) {
  // A task that ignores SIGTERM is SIGKILLed after the grace period.
  auto stubborn = [](int) {
    ::signal(SIGTERM, SIG_IGN);
    for (;;) ::pause();
    return 0;
  };
  ProcessPool pool(
      {.workers = 1, .task_timeout = milliseconds(100), .timeout_grace = milliseconds(100)});
  auto stuck = pool.submit(stubborn, 0);
  try {
    (void)stuck.get();
    FAIL() << "get() did not throw";
  } catch (const TaskTimeout& timeout) {
    EXPECT_NE(std::string(timeout.what()).find("SIGKILL"), std::string::npos) << timeout.what();
  }
  EXPECT_EQ(pool.submit(twice, 2).get(), 4);
}

TEST(ProcessPoolFailureTest, MapWithTimeoutFailsOnlyTheSlowItem) {
  ProcessPool pool({.workers = 2, .task_timeout = milliseconds(300)});
  auto fn = [](int x) {
    if (x == 3)
      for (;;) ::pause();
    return x + 1;
  };
  const auto outcomes = pool.map_outcomes(fn, std::views::iota(0, 8));
  ASSERT_EQ(outcomes.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    if (i == 3) {
      EXPECT_THROW((void)outcomes[3].value(), TaskTimeout);
    } else {
      EXPECT_EQ(outcomes[static_cast<std::size_t>(i)].value(), i + 1);
    }
  }
}

TEST(ProcessPoolFailureTest, FailingInitializerBreaksThePool) {
  ProcessPool pool({.workers = 2, .initializer = [] { throw std::runtime_error("no database"); }});
  // The pool may break before submit (which then throws) or after (then get() throws).
  try {
    auto future = pool.submit(twice, 1);
    (void)future.get();
    FAIL() << "neither submit() nor get() threw";
  } catch (const BrokenPool& broken) {
    EXPECT_NE(std::string(broken.what()).find("initializer failed"), std::string::npos)
        << broken.what();
    EXPECT_NE(std::string(broken.what()).find("no database"), std::string::npos) << broken.what();
  }
  EXPECT_THROW((void)pool.submit(twice, 1), BrokenPool);
  EXPECT_THROW((void)pool.map(twice, std::vector<int>{1, 2}), BrokenPool);
  EXPECT_NE(pool.broken_reason().find("no database"), std::string::npos);
  EXPECT_LE(pool.stats().workers.size(), 2u) << "no respawn after a failed initializer";
}

TEST(ProcessPoolFailureTest, CrashLoopBreaksThePool) {
  auto always_crash = [](int) {
    ::raise(SIGKILL);
    return 0;
  };
  ProcessPool pool({.workers = 2, .crash_loop_deaths = 5, .crash_loop_window = seconds(30)});
  const auto outcomes = pool.map_outcomes(always_crash, std::views::iota(0, 50), {.chunksize = 1});
  ASSERT_EQ(outcomes.size(), 50u);
  std::size_t crashed = 0;
  std::size_t broken = 0;
  for (const auto& outcome : outcomes) {
    ASSERT_FALSE(outcome.has_value());
    try {
      outcome.value();
    } catch (const WorkerCrashed&) {
      ++crashed;
    } catch (const BrokenPool& error) {
      ++broken;
      EXPECT_NE(std::string(error.what()).find("crash loop"), std::string::npos) << error.what();
    }
  }
  EXPECT_GE(crashed, 5u);
  EXPECT_EQ(crashed + broken, 50u);
  EXPECT_GT(broken, 0u);
  EXPECT_LE(pool.stats().workers.size(), 8u) << "the pool stopped respawning";
  EXPECT_THROW((void)pool.submit(twice, 1), BrokenPool);
}

TEST(ProcessPoolFailureTest, MaxTasksPerChildReplacesWorkers) {
  ProcessPool pool({.workers = 2, .max_tasks_per_child = 3});
  std::vector<Future<int>> futures;
  for (int i = 0; i < 30; ++i) futures.push_back(pool.submit(my_pid));
  std::map<int, int> tasks_per_pid;
  for (auto& f : futures) ++tasks_per_pid[f.get()];
  EXPECT_GE(tasks_per_pid.size(), 10u);
  for (const auto& [pid, tasks] : tasks_per_pid) EXPECT_LE(tasks, 3) << pid;
  const auto doubled = pool.map(twice, std::views::iota(0, 100), {.chunksize = 1});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(doubled[static_cast<std::size_t>(i)], 2 * i);
  EXPECT_EQ(pool.stats().crashes, 0u);
}

TEST(ProcessPoolFailureTest, MaxTasksPerChildLosesNothingAtShutdownAndDestruction) {
  std::vector<Future<int>> futures;
  {
    ProcessPool pool({.workers = 2, .max_tasks_per_child = 1});
    for (int i = 0; i < 25; ++i) futures.push_back(pool.submit(twice, i));
  }  // destroyed with work queued and workers retiring
  for (int i = 0; i < 25; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), 2 * i);
  futures.clear();
  ProcessPool pool({.workers = 2, .max_tasks_per_child = 2});
  for (int i = 0; i < 25; ++i) futures.push_back(pool.submit(twice, i));
  pool.shutdown({.wait = true});
  for (int i = 0; i < 25; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), 2 * i);
}

TEST(ProcessPoolFailureTest, NoChildLeftAfterCrashesTimeoutsAndTerminate) {
  const std::set<int> before = live_children();
  {
    ProcessPool pool({.workers = 2, .task_timeout = milliseconds(100)});
    (void)pool.map_outcomes(segv_on_13, std::views::iota(0, 20), {.chunksize = 1});
    auto stuck = pool.submit(sleep_forever, 0);
    EXPECT_THROW((void)stuck.get(), TaskTimeout);
    auto running = pool.submit(sleep_forever, 1);
    pool.terminate();
    EXPECT_THROW((void)running.get(), Cancelled);
  }
  EXPECT_EQ(live_children(), before);
  EXPECT_EQ(testing::count_children(), before.size()) << "no zombie either";
}

// Parent killed with SIGKILL mid-map: the workers and the zygote must exit on their own. The test
// becomes a child subreaper, so the orphans are re-parented to it (not to init) and it can tell
// exactly when each is gone, then reap them.
TEST(ProcessPoolFailureTest, ParentKilledMidMapLeavesNoOrphan) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    ::close(pipe_fds[0]);
    ProcessPool pool({.workers = 2});
    // Tell the test the pids, then map forever-ish.
    auto pids = pool.worker_pids();
    while (pids.size() < 2) {
      (void)pool.submit(twice, 1).get();
      pids = pool.worker_pids();
    }
    pids.push_back(pool.zygote_pid());
    std::string text;
    for (int pid : pids) text += std::to_string(pid) + " ";
    text += "\n";
    [[maybe_unused]] auto written = ::write(pipe_fds[1], text.data(), text.size());
    (void)pool.map(sleep_forever, std::views::iota(0, 100), {.chunksize = 1});
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buffer[256];
  ssize_t got;
  while ((got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) {
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.find('\n') != std::string::npos) break;
  }
  ::close(pipe_fds[0]);
  std::vector<int> pids;
  {
    std::istringstream in(text);
    int pid = 0;
    while (in >> pid) pids.push_back(pid);
  }
  ASSERT_EQ(pids.size(), 3u) << "child said: " << text;
  ::usleep(100'000);  // let the map start; the workers sit in a task that never ends
  ASSERT_EQ(::kill(parent, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);
  const auto killed_at = Clock::now();
  // Orphans come to us (the subreaper): reap every child as it exits — the listed ones and any
  // other the host left (a worker it was starting) — and time the last.
  std::set<int> left(pids.begin(), pids.end());
  while (Clock::now() - killed_at < seconds(10)) {
    for (pid_t reaped; (reaped = ::waitpid(-1, &status, WNOHANG)) > 0;) left.erase(reaped);
    for (auto it = left.begin(); it != left.end();) {
      it = process_exists(*it) ? std::next(it) : left.erase(it);
    }
    if (left.empty() && crew::testing::count_children() == 0) break;
    ::usleep(5000);
  }
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - killed_at);
  std::string alive;
  {
    std::ifstream kids("/proc/self/task/" + std::to_string(::getpid()) + "/children");
    for (long pid = 0; kids >> pid;) {
      std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
      std::string name;
      std::getline(cmdline, name, '\0');
      alive += std::to_string(pid) + " (" + name + ") ";
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      (void)::waitpid(static_cast<pid_t>(pid), &status, 0);
    }
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  EXPECT_TRUE(left.empty()) << left.size() << " process(es) outlived their parent by 10 s";
  EXPECT_EQ(alive, "") << "orphans still alive 10 s after their host was killed (listed: " << text
                       << ")";
  EXPECT_LT(took, seconds(3)) << "goal: within 1 s; took " << took.count() << " ms";
  RecordProperty("orphans_gone_ms", static_cast<int>(took.count()));
}

}  // namespace
}  // namespace crew
