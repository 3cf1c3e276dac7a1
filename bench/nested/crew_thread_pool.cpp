// Waits inside tasks on crew::ThreadPool: what the helping rule costs and what timed waits keep.
//
//   BM_Serial_Fib                    fib(n) by plain recursion: the baseline of the next one.
//   BM_CrewThreadPool_NestedFib      fib(n) where each level submits fib(n-1) and computes fib(n-2)
//                                    itself, then get(): nested waits, helped by descendants only;
//                                    below kCutoff it recurses serially. Read it as a ratio against
//                                    BM_Serial_Fib (speed-up) and divide by workers (efficiency).
//   BM_CrewThreadPool_TimedWaitLate  wait_for(10 ms) inside a task on a child that never finishes
//                                    in time, while the other workers' queue holds unrelated long
//                                    tasks: the counter late_us is how far past 10 ms it returned.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <thread>

#include "bench_config.hpp"
#include "crew/thread_pool.hpp"

namespace {

constexpr long kCutoff = 22;

long fib_serial(long k) { return k < 2 ? k : fib_serial(k - 1) + fib_serial(k - 2); }

long fib_nested(crew::ThreadPool& pool, long k) {
  if (k < kCutoff) return fib_serial(k);
  auto a = pool.submit([&pool, k] { return fib_nested(pool, k - 1); });
  const long b = fib_nested(pool, k - 2);
  return a.get() + b;
}

long fib_n() { return crew_bench::smoke_mode() ? 24 : 36; }

void BM_Serial_Fib(benchmark::State& state) {
  const long n = fib_n();
  long result = 0;
  for (auto _ : state) {
    result = fib_serial(n);
    benchmark::DoNotOptimize(result);
  }
}

void BM_CrewThreadPool_NestedFib(benchmark::State& state) {
  const long n = fib_n();
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(state.range(0))});
  const long expected = fib_serial(n);
  long result = 0;
  for (auto _ : state) {
    result = pool.submit([&pool, n] { return fib_nested(pool, n); }).get();
    benchmark::DoNotOptimize(result);
  }
  if (result != expected) state.SkipWithError("wrong fib");
}

void BM_CrewThreadPool_TimedWaitLate(benchmark::State& state) {
  using namespace std::chrono_literals;
  crew::ThreadPool pool({.workers = static_cast<std::size_t>(crew_bench::kThreads)});
  double late_us_total = 0;
  std::int64_t rounds = 0;
  for (auto _ : state) {
    std::latch release(1);
    std::atomic<std::int64_t> late_us{0};
    auto waiter = pool.submit([&] {
      auto child = pool.submit([&] { release.wait(); });
      const auto start = std::chrono::steady_clock::now();
      (void)child.wait_for(10ms);
      late_us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start - 10ms)
                    .count();
      release.count_down();
      child.get();
    });
    // Unrelated work queued behind the waiter: a waiter that helped would run it.
    auto unrelated = pool.submit([] { std::this_thread::sleep_for(20ms); });
    waiter.get();
    unrelated.get();
    late_us_total += static_cast<double>(late_us.load());
    ++rounds;
  }
  state.counters["late_us"] = rounds != 0 ? late_us_total / static_cast<double>(rounds) : 0;
}

BENCHMARK(BM_Serial_Fib)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CrewThreadPool_NestedFib)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(crew_bench::kThreads)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CrewThreadPool_TimedWaitLate)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(20);

}  // namespace
