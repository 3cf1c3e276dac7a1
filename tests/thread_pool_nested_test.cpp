// crew-test-label: concurrency
// ThreadPool: waits inside tasks — nested submit/get and map at any depth and worker count, the
// helping rule (a waiting task runs only what it asked for), timed waits that keep their deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "crew/thread_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long fib_serial(long k) { return k < 2 ? k : fib_serial(k - 1) + fib_serial(k - 2); }

// The pattern from the review: each level submits one half and computes the other itself.
long fib_nested(ThreadPool& pool, long k) {
  if (k < 2) return k;
  auto a = pool.submit([&pool, k] { return fib_nested(pool, k - 1); });
  const long b = fib_nested(pool, k - 2);
  return a.get() + b;
}

TEST(ThreadPoolNestedTest, RecursiveSubmitAndGetFinishesOnEveryWorkerCount) {
  for (std::size_t workers : {1, 2, 3, 4, 8}) {
    for (int round = 0; round < 5; ++round) {
      ThreadPool pool({.workers = workers});
      auto top = pool.submit([&pool] { return fib_nested(pool, 18); });
      EXPECT_EQ(top.get(), fib_serial(18)) << workers << " workers, round " << round;
    }
  }
}

TEST(ThreadPoolNestedTest, RecursiveSubmitFromTheCallerFinishes) {
  for (std::size_t workers : {1, 2, 3}) {
    ThreadPool pool({.workers = workers});
    EXPECT_EQ(fib_nested(pool, 16), fib_serial(16)) << workers << " workers";
  }
}

// map inside a task inside a map, with submit/get at the bottom: every engine of waiting at once.
TEST(ThreadPoolNestedTest, MapInsideTasksAtAnyDepthFinishes) {
  for (std::size_t workers : {1, 2, 4}) {
    ThreadPool pool({.workers = workers});
    std::vector<int> outer(6);
    std::iota(outer.begin(), outer.end(), 0);
    auto sums = pool.map(
        [&pool](int i) {
          std::vector<int> inner(5, i);
          auto mapped =
              pool.map([&pool](int v) { return pool.submit([v] { return v + 1; }).get(); }, inner,
                       {.chunksize = 1});
          int total = 0;
          for (int r : pool.imap([](int v) { return v * 2; }, mapped, {.chunksize = 1})) {
            total += r;
          }
          return total;
        },
        outer, {.chunksize = 1});
    for (int i = 0; i < 6; ++i) EXPECT_EQ(sums[i], 5 * 2 * (i + 1)) << workers << " workers";
  }
}

// A task waiting on futures it did not submit (from the caller) still finishes on one worker: the
// awaited tasks themselves may be run by the waiter.
TEST(ThreadPoolNestedTest, WaitOnTasksSubmittedByTheCallerFinishesOnOneWorker) {
  ThreadPool pool({.workers = 1});
  std::latch submitted(1);
  std::vector<Future<int>> others;
  auto waiter = pool.submit([&] {
    submitted.wait();
    int total = 0;
    for (auto& future : as_completed(others)) total += future.get();
    return total;
  });
  for (int i = 1; i <= 4; ++i) others.push_back(pool.submit([i] { return i; }));
  submitted.count_down();
  EXPECT_EQ(waiter.get(), 10);
}

// Helping never runs a task the waiter did not ask for: a task that holds its own mutex while it
// waits on its child must not run the caller's other tasks inside that critical section.
TEST(ThreadPoolNestedTest, WaitingTaskRunsNoUnrelatedTaskInsideItsCriticalSection) {
  for (std::size_t workers : {1, 2}) {
    ThreadPool pool({.workers = workers});
    std::mutex mu;
    // The thread inside the holder's critical section, or a default id.
    std::atomic<std::thread::id> inside{};
    std::atomic<int> unrelated_inside{0};
    std::latch unrelated_queued(1);
    auto holder = pool.submit([&] {
      unrelated_queued.wait();
      std::lock_guard lock(mu);
      inside = std::this_thread::get_id();
      const int child = pool.submit([] { return 7; }).get();
      inside = std::thread::id{};
      return child;
    });
    std::vector<Future<void>> unrelated;
    for (int i = 0; i < 50; ++i) {
      unrelated.push_back(pool.submit([&] {
        if (inside.load() == std::this_thread::get_id()) unrelated_inside.fetch_add(1);
      }));
    }
    unrelated_queued.count_down();
    EXPECT_EQ(holder.get(), 7);
    for (auto& f : unrelated) f.get();
    EXPECT_EQ(unrelated_inside.load(), 0) << workers << " workers";
  }
}

// A timed wait inside a task returns by its deadline even when unrelated long work is queued: it
// never runs a task on its own stack. (The tight figure is measured in bench/.)
TEST(ThreadPoolNestedTest, TimedWaitInsideATaskKeepsItsDeadline) {
  ThreadPool pool({.workers = 1});
  std::latch unrelated_queued(1);
  std::latch release_child(1);
  std::atomic<long long> waited_ms{-1};
  auto waiter = pool.submit([&] {
    unrelated_queued.wait();
    auto child = pool.submit([&] { release_child.wait(); });
    const auto start = Clock::now();
    const bool done = child.wait_for(100ms);
    waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    release_child.count_down();
    child.get();
    return done;
  });
  auto unrelated = pool.submit([] { std::this_thread::sleep_for(3s); });
  unrelated_queued.count_down();
  EXPECT_FALSE(waiter.get());
  EXPECT_GE(waited_ms.load(), 100);
  EXPECT_LT(waited_ms.load(), 1000) << "the timed wait ran the unrelated 3 s task";
  unrelated.get();
}

// A task that polls its child with a timed wait on the only worker still sees the child finish:
// while a worker blocks in a timed wait, a spare thread runs the queue.
TEST(ThreadPoolNestedTest, PollingATaskFromTheOnlyWorkerFinishes) {
  ThreadPool pool({.workers = 1});
  auto poller = pool.submit([&pool] {
    auto child = pool.submit([] { return 5; });
    int polls = 0;
    while (!child.wait_for(5ms)) ++polls;
    return child.get();
  });
  EXPECT_EQ(poller.get(), 5);
}

// Deep recursion on one worker through map and submit: depth is limited by the stack only.
TEST(ThreadPoolNestedTest, DeepChainOfNestedWaitsFinishes) {
  ThreadPool pool({.workers = 2});
  std::function<int(int)> down = [&](int depth) -> int {
    if (depth == 0) return 0;
    return pool.submit(down, depth - 1).get() + 1;
  };
  EXPECT_EQ(pool.submit(down, 200).get(), 200);
}

// A wait runs only what it waits on, never a sibling: here a sibling that runs until the wait
// returns would hang it on the waiter's own stack.
TEST(ThreadPoolNestedTest, WaitRunsTheAwaitedTaskNotASibling) {
  for (std::size_t workers : {1, 2, 4}) {
    ThreadPool pool({.workers = workers});
    for (int round = 0; round < 10; ++round) {
      auto top = pool.submit([&pool] {
        auto stop = std::make_shared<std::atomic<bool>>(false);
        auto work = pool.submit([] { return 42; });
        auto ticker = pool.submit([stop] {
          while (!stop->load()) std::this_thread::sleep_for(1ms);
        });
        const int value = work.get();
        stop->store(true);
        ticker.get();
        return value;
      });
      ASSERT_TRUE(top.wait_for(20s)) << workers << " workers: work.get() ran the sibling";
      EXPECT_EQ(top.get(), 42);
    }
  }
}

// More tasks polling their children with timed waits than there are spare threads: spares run
// only what blocked waiters wait on, so they never become pollers themselves.
TEST(ThreadPoolNestedTest, ManyTasksPollingTheirChildrenOnOneWorkerFinish) {
  ThreadPool pool({.workers = 1});
  constexpr int kPollers = static_cast<int>(detail::ThreadPoolCore::kMaxSpareThreads) + 8;
  std::vector<Future<int>> pollers;
  for (int i = 0; i < kPollers; ++i) {
    pollers.push_back(pool.submit([&pool, i] {
      auto child = pool.submit([i] { return i; });
      while (!child.wait_for(1ms)) {
      }
      return child.get();
    }));
  }
  long sum = 0;
  for (auto& f : pollers) sum += f.get();
  EXPECT_EQ(sum, long{kPollers} * (kPollers - 1) / 2);
}

// Spares never widen the pool for unrelated work: on one worker, tasks that each make a short
// timed wait on their own child still run one at a time.
TEST(ThreadPoolNestedTest, TimedWaitsDoNotWidenTheOneWorkerPool) {
  ThreadPool pool({.workers = 1});
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::vector<Future<void>> tasks;
  for (int i = 0; i < 16; ++i) {
    tasks.push_back(pool.submit([&] {
      const int now = running.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      auto child = pool.submit([] { std::this_thread::sleep_for(1ms); });
      (void)child.wait_for(2ms);
      child.wait();
      std::this_thread::sleep_for(2ms);
      running.fetch_sub(1);
    }));
  }
  for (auto& f : tasks) f.get();
  EXPECT_EQ(most.load(), 1);
}

// A relay of continuations (each link submits the next and returns once it has started): the
// lineage of a job ends at its first ancestor that returned, so memory stays bounded and nothing
// is freed by a recursion as deep as the chain (that once overflowed the stack at 1,000,000).
TEST(ThreadPoolNestedTest, LongRelayOfContinuationsFinishes) {
  constexpr long kLinks = 200'000;
  ThreadPool pool({.workers = 2});
  std::latch done(1);
  std::function<void(long, std::shared_ptr<std::atomic<bool>>)> step =
      [&](long n, std::shared_ptr<std::atomic<bool>> handed_to_me) {
        if (n == kLinks) {
          handed_to_me->store(true);
          done.count_down();
          return;
        }
        auto mine = std::make_shared<std::atomic<bool>>(false);
        (void)pool.submit(step, n + 1, mine);
        handed_to_me->store(true);
        while (!mine->load()) std::this_thread::yield();
      };
  (void)pool.submit(step, 0L, std::make_shared<std::atomic<bool>>(false));
  done.wait();
}

// A future as_completed yielded, dropped by the caller, must not make a stranger's task that later
// takes its address look awaited.
TEST(ThreadPoolNestedTest, AsCompletedRunsNoStrangerAtAReusedAddress) {
  ThreadPool pool({.workers = 1});
  std::atomic<int> strangers_inside{0};
  std::atomic<std::thread::id> waiting_thread{};
  auto top = pool.submit([&] {
    std::vector<Future<int>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(pool.submit([i] { return i; }));
    waiting_thread = std::this_thread::get_id();
    for (auto& f : as_completed(futures)) {
      Future<int> taken = std::move(f);
      (void)taken.get();
      taken = Future<int>();  // its state may be freed now
      (void)pool.submit([&] {
        if (waiting_thread.load() == std::this_thread::get_id()) strangers_inside.fetch_add(1);
        return 0;
      });
    }
    waiting_thread = std::thread::id{};
  });
  top.get();
  pool.shutdown({.wait = true});
  EXPECT_EQ(strangers_inside.load(), 0);
}

// Huge timeouts wait for the result instead of overflowing into the past.
TEST(ThreadPoolNestedTest, HugeTimeoutsWaitForTheResult) {
  ThreadPool pool({.workers = 1});
  auto slow = [] {
    std::this_thread::sleep_for(50ms);
    return 1;
  };
  EXPECT_TRUE(pool.submit(slow).wait_for(std::chrono::hours::max()));
  EXPECT_TRUE(pool.submit(slow).wait_for(std::chrono::nanoseconds::max()));
  EXPECT_TRUE(pool.submit(slow).wait_until(std::chrono::system_clock::time_point::max()));
}

// A graceful shutdown lets running tasks finish, sub-tasks and nested maps included: work already
// accepted is not failed with PoolClosed.
TEST(ThreadPoolNestedTest, ShutdownLetsRunningTasksFinishTheirSubTasks) {
  std::vector<Future<long>> results;
  {
    ThreadPool pool({.workers = 2});
    for (int i = 0; i < 4; ++i) {
      results.push_back(pool.submit([&pool] { return fib_nested(pool, 14); }));
      results.push_back(pool.submit([&pool] {
        std::vector<int> v(8, 1);
        auto out = pool.map([](int x) { return x; }, v, {.chunksize = 1});
        return std::accumulate(out.begin(), out.end(), 0L);
      }));
    }
    pool.shutdown({.wait = true});
    EXPECT_THROW((void)pool.submit([] { return 0L; }), PoolClosed) << "outside work is refused";
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].get(), i % 2 == 0 ? fib_serial(14) : 8) << i;
  }
}

}  // namespace
}  // namespace crew
