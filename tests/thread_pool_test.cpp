// crew-test-label: concurrency
// ThreadPool: submit/futures, shutdown, nested waits, thread safety. Map family: map_test.cpp.
#include "crew/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/leak_guard.hpp"

namespace crew {
namespace {

struct CustomError : std::runtime_error {
  CustomError(int code, const std::string& text) : std::runtime_error(text), code(code) {}
  int code;
};

TEST(ThreadPoolTest, SubmitReturnsTheValue) {
  ThreadPool pool({.workers = 2});
  Future<int> future = pool.submit([](int a, int b) { return a * b; }, 6, 7);
  EXPECT_EQ(future.get(), 42);
}

TEST(ThreadPoolTest, SubmitMovesArgumentsIntoTheTask) {
  ThreadPool pool({.workers = 1});
  auto owned = std::make_unique<int>(5);
  auto future = pool.submit([](std::unique_ptr<int> p) { return *p + 1; }, std::move(owned));
  EXPECT_EQ(future.get(), 6);
}

TEST(ThreadPoolTest, VoidTaskCompletes) {
  ThreadPool pool({.workers = 1});
  std::atomic<int> ran{0};
  Future<void> future = pool.submit([&] { ran = 1; });
  future.get();
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPoolTest, GetRethrowsTheTasksOwnException) {
  ThreadPool pool({.workers = 1});
  auto future = pool.submit([]() -> int { throw CustomError(7, "bad input"); });
  try {
    future.get();
    FAIL() << "get() did not throw";
  } catch (const CustomError& error) {
    EXPECT_EQ(error.code, 7);
    EXPECT_STREQ(error.what(), "bad input");
  }
}

TEST(ThreadPoolTest, GetTwiceThrowsCrewError) {
  ThreadPool pool({.workers = 1});
  auto future = pool.submit([] { return 1; });
  EXPECT_EQ(future.get(), 1);
  EXPECT_THROW(future.get(), Error);
}

TEST(ThreadPoolTest, WaitForTimesOutWhileTaskIsBlocked) {
  ThreadPool pool({.workers = 1});
  std::latch release(1);
  auto future = pool.submit([&] { release.wait(); });
  EXPECT_FALSE(future.wait_for(std::chrono::milliseconds(20)));
  EXPECT_FALSE(future.done());
  release.count_down();
  EXPECT_TRUE(future.wait_for(std::chrono::seconds(30)));
  EXPECT_TRUE(future.done());
}

TEST(ThreadPoolTest, CancelStopsAPendingTask) {
  ThreadPool pool({.workers = 1});
  std::latch release(1);
  auto blocker = pool.submit([&] { release.wait(); });
  std::atomic<bool> ran{false};
  auto pending = pool.submit([&] { ran = true; });
  EXPECT_EQ(pending.cancel(), CancelResult::kCancelled);
  EXPECT_TRUE(pending.done());
  EXPECT_TRUE(pending.cancelled());
  release.count_down();
  blocker.get();
  EXPECT_THROW(pending.get(), Cancelled);
  pool.shutdown();
  EXPECT_FALSE(ran.load());
}

TEST(ThreadPoolTest, CancelRequestsStopOnARunningStoppableTask) {
  ThreadPool pool({.workers = 1});
  std::latch started(1);
  auto future = pool.submit([&](std::stop_token stop) {
    started.count_down();
    while (!stop.stop_requested()) std::this_thread::yield();
    return std::string("stopped");
  });
  started.wait();
  EXPECT_EQ(future.cancel(), CancelResult::kStopRequested);
  EXPECT_EQ(future.get(), "stopped");
}

TEST(ThreadPoolTest, CancelSaysWhenARunningTaskCannotStop) {
  ThreadPool pool({.workers = 1});
  std::latch started(1);
  std::latch release(1);
  auto future = pool.submit([&] {
    started.count_down();
    release.wait();
    return 3;
  });
  started.wait();
  EXPECT_EQ(future.cancel(), CancelResult::kNotStoppable);
  release.count_down();
  EXPECT_EQ(future.get(), 3);
  EXPECT_EQ(future.cancel(), CancelResult::kAlreadyDone);
}

TEST(ThreadPoolTest, OnDoneRunsBeforeAndAfterSettling) {
  ThreadPool pool({.workers = 1});
  std::latch release(1);
  auto future = pool.submit([&] {
    release.wait();
    return 1;
  });
  std::atomic<int> calls{0};
  std::latch called(1);
  future.on_done([&] {
    ++calls;
    called.count_down();
  });
  release.count_down();
  called.wait();
  future.wait();
  future.on_done([&] { ++calls; });  // already settled: runs at once, on this thread
  EXPECT_EQ(calls.load(), 2);
}

TEST(ThreadPoolTest, DroppingAFutureNeitherBlocksNorCancels) {
  ThreadPool pool({.workers = 1});
  std::latch release(1);
  std::atomic<bool> ran{false};
  {
    auto future = pool.submit([&] {
      release.wait();
      ran = true;
    });
  }  // would deadlock here if the destructor waited
  release.count_down();
  pool.shutdown();
  EXPECT_TRUE(ran.load());
}

TEST(ThreadPoolTest, AsCompletedYieldsInCompletionOrder) {
  ThreadPool pool({.workers = 3});
  std::latch gate0(1), gate1(1), gate2(1);
  std::vector<Future<int>> futures;
  futures.push_back(pool.submit([&] {
    gate0.wait();
    return 0;
  }));
  futures.push_back(pool.submit([&] {
    gate1.wait();
    return 1;
  }));
  futures.push_back(pool.submit([&] {
    gate2.wait();
    return 2;
  }));
  gate2.count_down();
  std::vector<int> order;
  for (Future<int>& future : as_completed(futures)) {
    order.push_back(future.get());
    if (order.size() == 1) gate0.count_down();
    if (order.size() == 2) gate1.count_down();
  }
  EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
}

TEST(ThreadPoolTest, WaitAnyReturnsASettledIndex) {
  ThreadPool pool({.workers = 2});
  std::latch release(1);
  std::vector<Future<int>> futures;
  futures.push_back(pool.submit([&] {
    release.wait();
    return 0;
  }));
  futures.push_back(pool.submit([] { return 1; }));
  EXPECT_EQ(wait_any(futures), 1u);
  release.count_down();
  wait_all(futures);
  EXPECT_TRUE(futures[0].done());
  EXPECT_EQ(futures[0].get() + futures[1].get(), 1);
}

TEST(ThreadPoolTest, WaitAnyOnEmptyThrows) {
  std::vector<Future<int>> none;
  EXPECT_THROW(wait_any(none), std::invalid_argument);
}

TEST(ThreadPoolTest, TaskWaitingOnSubtasksDoesNotDeadlockWithOneWorker) {
  ThreadPool pool({.workers = 1});
  auto parent = pool.submit([&pool] {
    std::vector<Future<int>> children;
    for (int i = 0; i < 10; ++i) children.push_back(pool.submit([i] { return i; }));
    int sum = 0;
    for (auto& child : children) sum += child.get();
    return sum;
  });
  EXPECT_EQ(parent.get(), 45);
}

TEST(ThreadPoolTest, NestedMapDoesNotDeadlockWithOneWorker) {
  ThreadPool pool({.workers = 1});
  auto parent = pool.submit([&pool] {
    std::vector<int> inner{1, 2, 3, 4};
    auto doubled = pool.map([](int x) { return 2 * x; }, inner);
    int sum = 0;
    for (int x : pool.imap([](int x) { return x + 1; }, doubled)) sum += x;
    return sum;
  });
  EXPECT_EQ(parent.get(), 24);
}

TEST(ThreadPoolTest, WorkerWaitingOnATaskQueuedBehindItRunsIt) {
  ThreadPool pool({.workers = 1});
  std::promise<Future<int>*> handoff;
  Future<int> later;
  auto waiter = pool.submit([&] {
    Future<int>* target = handoff.get_future().get();
    return target->get();  // the only worker is this one: it must run `later` itself
  });
  later = pool.submit([] { return 9; });
  handoff.set_value(&later);
  EXPECT_EQ(waiter.get(), 9);
}

TEST(ThreadPoolTest, RejectsZeroWorkersNamingTheParameter) {
  try {
    ThreadPool pool({.workers = 0});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("workers"), std::string::npos);
  }
}

TEST(ThreadPoolTest, DefaultWorkerCountIsPositive) {
  ThreadPool pool;
  EXPECT_GE(pool.worker_count(), 1u);
}

TEST(ThreadPoolTest, SubmitAfterShutdownThrowsPoolClosed) {
  ThreadPool pool({.workers = 1});
  pool.shutdown();
  EXPECT_THROW((void)pool.submit([] { return 1; }), PoolClosed);
  EXPECT_THROW((void)pool.map([](int x) { return x; }, std::vector<int>{1}), PoolClosed);
}

TEST(ThreadPoolTest, ShutdownWaitRunsEveryQueuedTask) {
  ThreadPool pool({.workers = 1});
  std::atomic<int> ran{0};
  std::vector<Future<void>> futures;
  for (int i = 0; i < 200; ++i) futures.push_back(pool.submit([&] { ++ran; }));
  pool.shutdown({.wait = true});
  EXPECT_EQ(ran.load(), 200);
  for (auto& future : futures) EXPECT_TRUE(future.done());
}

TEST(ThreadPoolTest, ShutdownCancelPendingCancelsQueuedTasks) {
  ThreadPool pool({.workers = 1});
  std::latch started(1);
  std::latch release(1);
  auto blocker = pool.submit([&] {
    started.count_down();
    release.wait();
  });
  started.wait();
  std::vector<Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(pool.submit([i] { return i; }));
  ShutdownReport report = pool.shutdown({.wait = false, .cancel_pending = true});
  EXPECT_EQ(report.tasks_cancelled, 10u);
  release.count_down();
  blocker.get();
  for (auto& future : queued) EXPECT_THROW(future.get(), Cancelled);
}

TEST(ThreadPoolTest, SubmitRacingShutdownRunsOrThrows) {
  for (int round = 0; round < 20; ++round) {
    ThreadPool pool({.workers = 2});
    std::atomic<int> accepted{0}, refused{0}, completed{0};
    std::vector<std::thread> submitters;
    std::latch go(5);
    for (int t = 0; t < 4; ++t) {
      submitters.emplace_back([&] {
        go.arrive_and_wait();
        for (int i = 0; i < 200; ++i) {
          try {
            auto future = pool.submit([&] { ++completed; });
            ++accepted;
            future.wait();
          } catch (const PoolClosed&) {
            ++refused;
          }
        }
      });
    }
    go.arrive_and_wait();
    pool.shutdown();
    for (auto& thread : submitters) thread.join();
    EXPECT_EQ(accepted.load() + refused.load(), 800);
    EXPECT_EQ(completed.load(), accepted.load());
  }
}

TEST(ThreadPoolTest, UnobservedFailureIsCountedAtShutdown) {
  ThreadPool pool({.workers = 1});
  (void)pool.submit([]() -> int { throw std::runtime_error("nobody looked"); });
  auto observed = pool.submit([]() -> int { throw std::runtime_error("seen"); });
  EXPECT_THROW(observed.get(), std::runtime_error);
  ShutdownReport report = pool.shutdown();
  EXPECT_EQ(report.unobserved_failures, 1u);
  EXPECT_NE(report.first_unobserved_failure.find("nobody looked"), std::string::npos);
  EXPECT_NE(report.first_unobserved_failure.find("std::runtime_error"), std::string::npos);
}

TEST(ThreadPoolTest, DestructorLogsUnobservedFailures) {
  std::vector<std::string> lines;
  std::mutex lines_mu;
  {
    ThreadPool pool({.workers = 1, .on_log = [&](std::string_view line) {
                       std::lock_guard lock(lines_mu);
                       lines.emplace_back(line);
                     }});
    (void)pool.submit([]() -> int { throw std::logic_error("dropped"); });
  }
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("1 failed task"), std::string::npos);
  EXPECT_NE(lines[0].find("dropped"), std::string::npos);
}

TEST(ThreadPoolTest, ManyThreadsSubmitAtOnce) {
  ThreadPool pool({.workers = 2});
  std::vector<std::thread> threads;
  std::atomic<long> total{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Future<long>> futures;
      for (long i = 0; i < 500; ++i) futures.push_back(pool.submit([i, t] { return i * t; }));
      for (auto& future : futures) total += future.get();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(total.load(), (0 + 1 + 2 + 3) * (499L * 500 / 2));
}

}  // namespace
}  // namespace crew
