// An idle ThreadPool must cost nothing: its workers sleep on a condition variable, they do not
// spin or poll. Not labelled `concurrency`: TSan's own background thread would blur the figure.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <thread>
#include <vector>

#include "crew/thread_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

std::chrono::microseconds process_cpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto to_us = [](const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  };
  return to_us(usage.ru_utime) + to_us(usage.ru_stime);
}

TEST(ThreadPoolIdleTest, IdlePoolUsesNoCpuAfterABurst) {
  ThreadPool pool({.workers = 2});
  std::vector<int> input(100000, 1);
  auto out = pool.map([](int x) { return x + 1; }, input, {.chunksize = 100});
  ASSERT_EQ(out.back(), 2);
  std::vector<Future<int>> futures;
  for (int i = 0; i < 1000; ++i) futures.push_back(pool.submit([i] { return i; }));
  for (auto& future : futures) (void)future.get();

  const auto before = process_cpu();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the measured interval, not a sync
  const auto used = process_cpu() - before;
  EXPECT_LT(used, std::chrono::milliseconds(5)) << "idle pool used " << used.count() << " us";
}

}  // namespace
}  // namespace crew
