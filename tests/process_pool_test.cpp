// crew-test-label: process concurrency
// ProcessPool: submit/futures, the map family, what crosses, errors, shutdown and stats. Failure
// semantics (crashes, timeouts, orphans): process_pool_failure_test.cpp.
#include "crew/process_pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "crew/workloads/primes.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

int twice(int x) { return 2 * x; }
int my_pid() { return static_cast<int>(::getpid()); }
std::string shout(const std::string& text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text + "!";
  return out;
}
int fail_on_negative(int x) {
  if (x < 0) throw std::domain_error("negative: " + std::to_string(x));
  return x;
}

struct Point {
  double x;
  double y;
  int id;
};
static_assert(detail::kRaw<Point>, "an aggregate of arithmetic fields takes the raw fast path");

struct Named {
  std::string name;
  std::vector<int> values;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, values);
  }
};

struct HoldsPointer {
  int* p;
};
struct HoldsView {
  std::string_view text;
};
static_assert(!kCrossesProcesses<int*>);
static_assert(!kCrossesProcesses<std::string_view>);
static_assert(!kCrossesProcesses<std::span<int>>);
static_assert(!kCrossesProcesses<HoldsPointer>);
static_assert(!kCrossesProcesses<HoldsView>);
static_assert(!kCrossesProcesses<std::vector<const char*>>);
static_assert(!kCrossesProcesses<std::pair<int, std::string_view>>);
static_assert(kCrossesProcesses<std::vector<std::string>>);
static_assert(kCrossesProcesses<std::map<std::string, std::pair<int, double>>>);
static_assert(kCrossesProcesses<Named>);
static_assert(kCrossesProcesses<Point>);

TEST(ProcessPoolTest, SubmitRunsInAnotherProcess) {
  ProcessPool pool({.workers = 2});
  Future<int> future = pool.submit(my_pid);
  const int worker = future.get();
  EXPECT_NE(worker, static_cast<int>(::getpid()));
  const auto pids = pool.worker_pids();
  EXPECT_NE(std::find(pids.begin(), pids.end(), worker), pids.end());
}

TEST(ProcessPoolTest, SubmitCarriesArgumentsAndResults) {
  ProcessPool pool({.workers = 1});
  EXPECT_EQ(pool.submit(twice, 21).get(), 42);
  EXPECT_EQ(pool.submit(shout, std::string("hey"), 2).get(), "hey!hey!");
  auto sum = pool.submit([](std::vector<int> v) { return std::accumulate(v.begin(), v.end(), 0); },
                         std::vector<int>{1, 2, 3, 4});
  EXPECT_EQ(sum.get(), 10);
  auto moved = pool.submit([](Point p) { return Point{p.y, p.x, p.id + 1}; }, Point{1.5, 2.5, 7});
  const Point got = moved.get();
  EXPECT_EQ(got.x, 2.5);
  EXPECT_EQ(got.y, 1.5);
  EXPECT_EQ(got.id, 8);
  auto named = pool.submit(
      [](Named n) {
        n.name += "?";
        n.values.push_back(9);
        return n;
      },
      Named{"q", {1}});
  const Named back = named.get();
  EXPECT_EQ(back.name, "q?");
  EXPECT_EQ(back.values, (std::vector<int>{1, 9}));
}

TEST(ProcessPoolTest, VoidTaskCompletes) {
  ProcessPool pool({.workers = 1});
  Future<void> future = pool.submit([](int) {}, 3);
  future.get();
  EXPECT_TRUE(future.done());
}

TEST(ProcessPoolTest, TaskExceptionComesBackAsTaskFailed) {
  ProcessPool pool({.workers = 1});
  auto future = pool.submit(fail_on_negative, -5);
  try {
    future.get();
    FAIL() << "get() did not throw";
  } catch (const TaskFailed& error) {
    EXPECT_EQ(error.type_name(), "std::domain_error");
    EXPECT_EQ(error.message(), "negative: -5");
  }
  EXPECT_EQ(pool.submit(fail_on_negative, 5).get(), 5) << "the pool stays usable";
}

struct Unwritable {
  int value = 0;
  template <class Archive>
  void save(Archive&) const {
    throw std::runtime_error("cannot write me");
  }
  template <class Archive>
  void load(Archive&) {}
};

TEST(ProcessPoolTest, ResultThatFailsToEncodeFailsOnlyThatTask) {
  ProcessPool pool({.workers = 1});
  auto bad = pool.submit([] { return Unwritable{}; });
  try {
    (void)bad.get();
    FAIL() << "get() did not throw";
  } catch (const SerializationError& error) {
    EXPECT_NE(std::string(error.what()).find("cannot write me"), std::string::npos) << error.what();
  }
  EXPECT_EQ(pool.submit(twice, 4).get(), 8);
}

TEST(ProcessPoolTest, MapReturnsResultsInInputOrder) {
  ProcessPool pool({.workers = 2});
  std::vector<int> input(1000);
  std::iota(input.begin(), input.end(), -10);
  const std::vector<int> doubled = pool.map(twice, input, {.chunksize = 7});
  ASSERT_EQ(doubled.size(), input.size());
  for (std::size_t i = 0; i < input.size(); ++i) EXPECT_EQ(doubled[i], 2 * input[i]);
}

TEST(ProcessPoolTest, MapSumsThePrimesLikeTheArticle) {
  ProcessPool pool({.workers = 2});
  const auto results =
      pool.map(workloads::is_prime, std::views::iota(std::int64_t{0}, std::int64_t{1'000'000}));
  EXPECT_EQ(std::accumulate(results.begin(), results.end(), std::int64_t{0}), 37550402023);
}

TEST(ProcessPoolTest, MapOfStringsUsesCereal) {
  ProcessPool pool({.workers = 2});
  const std::vector<std::string> words = {"a", "bb", "", "dddd"};
  const auto lengths = pool.map([](const std::string& s) { return s.size(); }, words);
  EXPECT_EQ(lengths, (std::vector<std::size_t>{1, 2, 0, 4}));
  const auto upper = pool.map([](std::string s) { return s + s; }, words, {.chunksize = 1});
  EXPECT_EQ(upper, (std::vector<std::string>{"aa", "bbbb", "", "dddddddd"}));
}

TEST(ProcessPoolTest, MapOfUnknownSizeInputIsComplete) {
  ProcessPool pool({.workers = 2});
  auto numbers = std::views::iota(0) | std::views::take_while([](int x) { return x < 5000; });
  const auto out = pool.map(twice, numbers);
  ASSERT_EQ(out.size(), 5000u);
  for (int i = 0; i < 5000; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
}

TEST(ProcessPoolTest, MapThrowsTheLowestPositionFailure) {
  // Position 3 is slow and fails; position 9 fails at once. map must report position 3.
  ProcessPool pool({.workers = 2});
  const std::vector<int> input = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  auto slow_fail = [](int x) {
    if (x == 3) {
      ::usleep(200'000);
      throw std::runtime_error("item 3");
    }
    if (x == 9) throw std::runtime_error("item 9");
    return x;
  };
  try {
    (void)pool.map(slow_fail, input, {.chunksize = 1});
    FAIL() << "map did not throw";
  } catch (const TaskFailed& error) {
    EXPECT_EQ(error.message(), "item 3");
  }
  EXPECT_EQ(pool.map(twice, std::vector<int>{1, 2}), (std::vector<int>{2, 4}));
}

TEST(ProcessPoolTest, MapOutcomesKeepsEveryOtherResult) {
  ProcessPool pool({.workers = 2});
  const std::vector<int> input = {1, -2, 3, -4, 5};
  const auto outcomes = pool.map_outcomes(fail_on_negative, input, {.chunksize = 2});
  ASSERT_EQ(outcomes.size(), input.size());
  EXPECT_EQ(outcomes[0].value(), 1);
  EXPECT_FALSE(outcomes[1].has_value());
  EXPECT_EQ(outcomes[1].error_message(), "crew::TaskFailed: std::domain_error: negative: -2");
  EXPECT_EQ(outcomes[2].value(), 3);
  EXPECT_FALSE(outcomes[3].has_value());
  EXPECT_EQ(outcomes[4].value(), 5);
}

TEST(ProcessPoolTest, StarmapUnpacksTuples) {
  ProcessPool pool({.workers = 2});
  const std::vector<std::tuple<int, int>> pairs = {{1, 2}, {3, 4}, {5, 6}};
  const auto products = pool.starmap([](int a, int b) { return a * b; }, pairs);
  EXPECT_EQ(products, (std::vector<int>{2, 12, 30}));
}

TEST(ProcessPoolTest, ImapIsOrderedAndLazy) {
  ProcessPool pool({.workers = 2});
  std::vector<int> seen;
  for (int x : pool.imap(twice, std::views::iota(0, 300), {.chunksize = 8})) seen.push_back(x);
  ASSERT_EQ(seen.size(), 300u);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], 2 * i);
}

TEST(ProcessPoolTest, ImapUnorderedYieldsEveryItemThenTheFailure) {
  ProcessPool pool({.workers = 2});
  std::multiset<int> seen;
  try {
    for (int x : pool.imap_unordered(fail_on_negative, std::vector<int>{1, 2, -3, 4, 5},
                                     {.chunksize = 1})) {
      seen.insert(x);
    }
    FAIL() << "imap_unordered did not throw";
  } catch (const TaskFailed& error) {
    EXPECT_EQ(error.message(), "negative: -3");
  }
  EXPECT_EQ(seen, (std::multiset<int>{1, 2, 4, 5}));
}

TEST(ProcessPoolTest, LeavingImapEarlyIsSafe) {
  ProcessPool pool({.workers = 2});
  int taken = 0;
  for (int x : pool.imap(twice, std::views::iota(0, 100000), {.chunksize = 10})) {
    if (++taken == 25) break;
    (void)x;
  }
  EXPECT_EQ(taken, 25);
  EXPECT_EQ(pool.submit(twice, 1).get(), 2) << "the pool goes on after an abandoned imap";
}

TEST(ProcessPoolTest, ChunksizeZeroIsRefused) {
  ProcessPool pool({.workers = 1});
  EXPECT_THROW((void)pool.map(twice, std::vector<int>{1}, {.chunksize = 0}), std::invalid_argument);
}

TEST(ProcessPoolTest, BadOptionsAreRefusedUpFront) {
  EXPECT_THROW(ProcessPool({.workers = 0}), std::invalid_argument);
  EXPECT_THROW(ProcessPool({.workers = 1, .max_tasks_per_child = 0}), std::invalid_argument);
  EXPECT_THROW(ProcessPool({.workers = 1, .task_timeout = std::chrono::milliseconds(0)}),
               std::invalid_argument);
}

TEST(ProcessPoolTest, InitializerRunsInEachWorker) {
  // The initializer is forked, not sent: it may capture. Here it sets a global in the worker.
  static int g_initialized = 0;
  ProcessPool pool({.workers = 2, .initializer = [] { g_initialized = 41; }});
  EXPECT_EQ(pool.submit([] { return g_initialized + 1; }).get(), 42);
  EXPECT_EQ(g_initialized, 0) << "the initializer ran in this process";
}

TEST(ProcessPoolTest, SubmitAfterShutdownThrows) {
  ProcessPool pool({.workers = 1});
  pool.shutdown();
  EXPECT_THROW((void)pool.submit(twice, 1), PoolClosed);
  EXPECT_THROW((void)pool.map(twice, std::vector<int>{1}), PoolClosed);
}

TEST(ProcessPoolTest, ShutdownWaitsForQueuedTasks) {
  ProcessPool pool({.workers = 1});
  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(pool.submit(twice, i));
  pool.shutdown({.wait = true});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), 2 * i);
  EXPECT_TRUE(pool.worker_pids().empty());
}

// Creates `path`, then sleeps: the test knows the task has started when the file exists.
int mark_then_sleep(std::string path, int micros) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file != nullptr) std::fclose(file);
  ::usleep(static_cast<useconds_t>(micros));
  return 1;
}

std::string scratch_path(const char* name) {
  return ::testing::TempDir() + "crew_" + name + "_" + std::to_string(::getpid());
}

void wait_for_file(const std::string& path) {
  while (::access(path.c_str(), F_OK) != 0) ::usleep(1000);  // bounded by the ctest TIMEOUT
  ::unlink(path.c_str());
}

TEST(ProcessPoolTest, ShutdownCancelPendingCancelsQueuedTasks) {
  ProcessPool pool({.workers = 1});
  const std::string started = scratch_path("cancel_pending");
  auto slow = pool.submit(mark_then_sleep, started, 100'000);
  std::vector<Future<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.submit(twice, i));
  wait_for_file(started);
  const ShutdownReport report = pool.shutdown({.wait = true, .cancel_pending = true});
  EXPECT_EQ(slow.get(), 1) << "a running task completes";
  EXPECT_EQ(report.tasks_cancelled, 5u);
  for (auto& f : queued) {
    EXPECT_TRUE(f.cancelled());
    EXPECT_THROW((void)f.get(), Cancelled);
  }
}

TEST(ProcessPoolTest, TerminateCancelsRunningAndQueuedTasks) {
  ProcessPool pool({.workers = 1});
  const std::string started = scratch_path("terminate");
  auto running = pool.submit(mark_then_sleep, started, 30'000'000);
  auto queued = pool.submit(twice, 1);
  wait_for_file(started);
  const auto start = std::chrono::steady_clock::now();
  pool.terminate();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_THROW((void)running.get(), Cancelled);
  EXPECT_THROW((void)queued.get(), Cancelled);
  EXPECT_TRUE(pool.worker_pids().empty());
}

TEST(ProcessPoolTest, StatsRecordChunksAndWorkers) {
  ProcessPool pool({.workers = 2});
  (void)pool.map(workloads::is_prime, std::views::iota(std::int64_t{0}, std::int64_t{200'000}),
                 {.chunksize = 10'000});
  const ProcessPoolStats stats = pool.stats();
  ASSERT_EQ(stats.chunks.size(), 20u);
  std::size_t items = 0;
  for (const auto& chunk : stats.chunks) {
    items += chunk.items;
    EXPECT_GT(chunk.pid, 0);
    EXPECT_GT(chunk.wall.count(), 0);
  }
  EXPECT_EQ(items, 200'000u);
  ASSERT_GE(stats.workers.size(), 2u);
  for (const auto& worker : stats.workers) EXPECT_GT(worker.peak_rss_kib, 0);
}

TEST(ProcessPoolTest, StopTokenCancelsMapPromptly) {
  ProcessPool pool({.workers = 2});
  std::stop_source stop;
  std::thread stopper([&] {
    ::usleep(100'000);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)pool.map(
                   [](int) {
                     ::sleep(20);
                     return 0;
                   },
                   std::vector<int>(10, 0), {.chunksize = 1, .stop = stop.get_token()}),
               Cancelled);
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "running chunks are killed, not awaited";
  EXPECT_EQ(pool.submit(twice, 2).get(), 4);
}

}  // namespace
}  // namespace crew
