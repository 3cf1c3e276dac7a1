// crew-test-label: process concurrency
// One test body against every engine (as CPython runs its executor tests): what the Executor
// interface promises holds for ThreadPool and ProcessPool alike. Engine-specific behaviour is in
// thread_pool_test.cpp, map_test.cpp and process_pool*_test.cpp.
#include <gtest/gtest.h>

#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "crew/crew.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

int plus_one(int x) { return x + 1; }
int reject_negative(int x) {
  if (x < 0) throw std::invalid_argument("negative " + std::to_string(x));
  return x;
}
int multiply(int a, int b) { return a * b; }

template <class Pool>
class ExecutorConformanceTest : public ::testing::Test {
 protected:
  static Pool make(std::size_t workers) {
    if constexpr (std::is_same_v<Pool, ProcessPool>) {
      return Pool({.workers = workers, .warn_if_threads_running = false});
    } else {
      return Pool({.workers = workers});
    }
  }
};

using Engines = ::testing::Types<ThreadPool, ProcessPool>;
TYPED_TEST_SUITE(ExecutorConformanceTest, Engines);

// The text of a task's failure, whichever way the engine carries it (ThreadPool: the object
// itself; ProcessPool: crew::TaskFailed with its type name and what()).
std::string failure_text(const std::exception_ptr& error) { return describe_exception(error); }

TYPED_TEST(ExecutorConformanceTest, SatisfiesTheExecutorConcept) {
  static_assert(Executor<TypeParam>);
  SUCCEED();
}

TYPED_TEST(ExecutorConformanceTest, SubmitReturnsTheValue) {
  auto pool = TestFixture::make(2);
  EXPECT_EQ(pool.submit(multiply, 6, 7).get(), 42);
}

TYPED_TEST(ExecutorConformanceTest, MapIsOrderedAndComplete) {
  auto pool = TestFixture::make(2);
  const auto out = pool.map(plus_one, std::views::iota(0, 10'000), {.chunksize = 13});
  ASSERT_EQ(out.size(), 10'000u);
  for (int i = 0; i < 10'000; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i + 1);
}

TYPED_TEST(ExecutorConformanceTest, AutoChunksizeMapMatchesSerial) {
  auto pool = TestFixture::make(2);
  const auto out =
      pool.map(workloads::is_prime, std::views::iota(std::int64_t{0}, std::int64_t{200'000}));
  std::int64_t serial = 0;
  for (std::int64_t i = 0; i < 200'000; ++i) serial += workloads::is_prime(i);
  EXPECT_EQ(std::accumulate(out.begin(), out.end(), std::int64_t{0}), serial);
}

TYPED_TEST(ExecutorConformanceTest, MapThrowsTheLowestFailure) {
  auto pool = TestFixture::make(2);
  const std::vector<int> input = {0, 1, 2, -3, 4, 5, -6, 7};
  try {
    (void)pool.map(reject_negative, input, {.chunksize = 1});
    FAIL() << "map did not throw";
  } catch (...) {
    EXPECT_NE(failure_text(std::current_exception()).find("negative -3"), std::string::npos)
        << failure_text(std::current_exception());
  }
  EXPECT_EQ(pool.map(plus_one, std::vector<int>{1}), std::vector<int>{2}) << "still usable";
}

TYPED_TEST(ExecutorConformanceTest, MapOutcomesKeepsEveryResult) {
  auto pool = TestFixture::make(2);
  const auto outcomes = pool.map_outcomes(reject_negative, std::vector<int>{1, -2, 3});
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].value(), 1);
  EXPECT_NE(outcomes[1].error_message().find("negative -2"), std::string::npos);
  EXPECT_EQ(outcomes[2].value(), 3);
}

TYPED_TEST(ExecutorConformanceTest, ImapAndImapUnorderedSeeEveryItem) {
  auto pool = TestFixture::make(2);
  std::vector<int> ordered;
  for (int x : pool.imap(plus_one, std::views::iota(0, 500), {.chunksize = 7}))
    ordered.push_back(x);
  std::vector<int> expected(500);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(ordered, expected);
  std::multiset<int> unordered;
  for (int x : pool.imap_unordered(plus_one, std::views::iota(0, 500), {.chunksize = 7})) {
    unordered.insert(x);
  }
  EXPECT_EQ(unordered, std::multiset<int>(expected.begin(), expected.end()));
}

TYPED_TEST(ExecutorConformanceTest, StarmapUnpacks) {
  auto pool = TestFixture::make(2);
  const std::vector<std::tuple<int, int>> pairs = {{2, 3}, {4, 5}};
  EXPECT_EQ(pool.starmap(multiply, pairs), (std::vector<int>{6, 20}));
}

TYPED_TEST(ExecutorConformanceTest, ProgressReachesTheTotal) {
  auto pool = TestFixture::make(2);
  std::size_t last_done = 0;
  std::size_t last_total = 0;
  (void)pool.map(plus_one, std::views::iota(0, 1000),
                 {.chunksize = 10, .on_progress = [&](std::size_t done, std::size_t total) {
                    EXPECT_GE(done, last_done);
                    last_done = done;
                    last_total = total;
                  }});
  EXPECT_EQ(last_done, 1000u);
  EXPECT_EQ(last_total, 1000u);
}

TYPED_TEST(ExecutorConformanceTest, BadChunksizeIsInvalidArgument) {
  auto pool = TestFixture::make(1);
  try {
    (void)pool.map(plus_one, std::vector<int>{1}, {.chunksize = 0});
    FAIL() << "map did not throw";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("chunksize"), std::string::npos) << error.what();
  }
}

TYPED_TEST(ExecutorConformanceTest, WorkAfterShutdownIsRefused) {
  auto pool = TestFixture::make(1);
  auto before = pool.submit(plus_one, 1);
  const ShutdownReport report = pool.shutdown({.wait = true});
  EXPECT_EQ(before.get(), 2);
  EXPECT_EQ(report.unobserved_failures, 0u);
  EXPECT_THROW((void)pool.submit(plus_one, 1), PoolClosed);
}

TYPED_TEST(ExecutorConformanceTest, DroppedFailureIsCountedAtShutdown) {
  auto pool = TestFixture::make(1);
  {
    auto dropped = pool.submit(reject_negative, -1);
    dropped.wait();
  }
  const ShutdownReport report = pool.shutdown({.wait = true});
  EXPECT_EQ(report.unobserved_failures, 1u);
  EXPECT_NE(report.first_unobserved_failure.find("negative -1"), std::string::npos)
      << report.first_unobserved_failure;
}

TYPED_TEST(ExecutorConformanceTest, AsCompletedYieldsEveryFuture) {
  auto pool = TestFixture::make(2);
  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(pool.submit(plus_one, i));
  std::multiset<int> seen;
  for (auto& future : as_completed(futures)) seen.insert(future.get());
  std::multiset<int> expected;
  for (int i = 0; i < 20; ++i) expected.insert(i + 1);
  EXPECT_EQ(seen, expected);
  const std::size_t any = wait_any(futures);
  EXPECT_LT(any, futures.size());
}

}  // namespace
}  // namespace crew
