// crew-test-label: process concurrency
// ProcessPool from several host threads at once: the dispatcher thread, submitters, map callers
// and shutdown race each other here, so this file also runs under ThreadSanitizer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <numeric>
#include <ranges>
#include <thread>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

int square(int x) { return x * x; }

TEST(ProcessPoolThreadsTest, SeveralThreadsSubmitAndMapAtOnce) {
  ProcessPool pool({.workers = 2, .warn_if_threads_running = false});
  constexpr int kThreads = 4;
  std::latch go(kThreads);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      std::vector<Future<int>> futures;
      for (int i = 0; i < 50; ++i) futures.push_back(pool.submit(square, t * 100 + i));
      const auto mapped = pool.map(square, std::views::iota(0, 500), {.chunksize = 16});
      for (int i = 0; i < 500; ++i) {
        if (mapped[static_cast<std::size_t>(i)] != i * i) ++wrong;
      }
      for (int i = 0; i < 50; ++i) {
        const int x = t * 100 + i;
        if (futures[static_cast<std::size_t>(i)].get() != x * x) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(ProcessPoolThreadsTest, SubmitRacingShutdownRunsOrThrows) {
  for (int round = 0; round < 5; ++round) {
    ProcessPool pool({.workers = 2, .warn_if_threads_running = false});
    std::atomic<int> ran{0};
    std::atomic<int> refused{0};
    std::thread submitter([&] {
      for (int i = 0; i < 200; ++i) {
        try {
          auto future = pool.submit(square, i);
          if (future.get() == i * i) ++ran;
        } catch (const PoolClosed&) {
          ++refused;
        } catch (const Cancelled&) {
          ++refused;
        }
      }
    });
    ::usleep(static_cast<useconds_t>(2000 * round));
    pool.shutdown({.wait = true});
    submitter.join();
    EXPECT_EQ(ran.load() + refused.load(), 200) << "every submit either ran or threw";
  }
}

TEST(ProcessPoolThreadsTest, FutureCallbacksRunOnTheDispatcher) {
  ProcessPool pool({.workers = 2, .warn_if_threads_running = false});
  std::atomic<int> total{0};
  std::vector<Future<int>> futures;
  for (int i = 0; i < 100; ++i) {
    futures.push_back(pool.submit(square, i));
    futures.back().on_done([&total] { total.fetch_add(1); });
  }
  for (auto& f : crew::as_completed(futures)) (void)f.get();
  pool.shutdown();
  EXPECT_EQ(total.load(), 100);
}

}  // namespace
}  // namespace crew
