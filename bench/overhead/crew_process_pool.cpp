// Per-item, per-task and lifetime overhead of crew::ProcessPool, with a trivial function (x*3+1).
//
//   BM_CrewProcessPool_Map                  pool.map(f, vector of map_items() ints), default
//                                           options: each chunk's items are copied into a request,
//                                           sent to a worker process, and the results come back
//                                           the same way into the returned vector (allocated in
//                                           the timed region, as for BM_CrewThreadPool_Map).
//   BM_CrewProcessPool_SubmitBulk           process_bulk_tasks() × pool.submit(f, i), then get()
//                                           on every Future: per task, submit + one request/reply
//                                           frame pair through the dispatcher + get.
//   BM_CrewProcessPool_SubmitRoundTrip      one submit → get at a time: host thread → dispatcher
//                                           thread → worker process → dispatcher → host thread.
//   BM_CrewProcessPool_StartStop            a pool of kThreads workers built and destroyed with no
//                                           task: the zygote's fork, the workers' clone, and a
//                                           shutdown that waits until every child is reaped.
//   BM_CrewProcessPool_StartFirstTaskStop   the same with one submit → get in between, so it also
//                                           waits for a worker to be ready and includes the first
//                                           task's round trip: the shortest useful pool lifetime.
//   BM_CrewProcessPool_TimeoutOvershoot     task_timeout = 50 ms, a task that sleeps forever: how
//                                           far past the deadline its Future settles with
//                                           crew::TaskTimeout (the worker dies at SIGTERM).
//   BM_CrewProcessPool_TimeoutOvershootTermIgnored
//                                           the same task ignoring SIGTERM: it dies at the SIGKILL
//                                           sent timeout_grace (100 ms by default) later.
// Except for the Start* benchmarks, the pool is built once, outside the timed region, and given
// one untimed round of the work first: until the pool ends, its processes share this process's
// pre-fork memory copy-on-write, so this process's first write to each such page costs a copy
// and a TLB flush (see bench/primes/crew_process_pool.cpp). Map's answer check is that round.
//
// Every pool is forked from this process, and a fork's cost grows with the parent's resident
// memory (its page tables are copied): the Start* benchmarks build the 80 MB map input first, so
// they always fork a process that holds it, whatever ran before them, and report that resident
// size as `host_rss_mib`.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <vector>

#include "bench_config.hpp"
#include "crew/errors.hpp"
#include "crew/process_pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kTaskTimeout = std::chrono::milliseconds(50);

// This process's resident set now, in MiB (from /proc/self/statm), or 0 if unknown.
double resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0;
  long pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

void BM_CrewProcessPool_Map(benchmark::State& state) {
  const std::vector<int>& in = crew_bench::map_input();
  crew::ProcessPool pool(crew_bench::process_pool_options(state.range(0)));
  if (!crew_bench::is_trivial_map_of_input(pool.map(crew_bench::kTrivial, in))) {
    state.SkipWithError("wrong map result");
    return;
  }
  for (auto _ : state) {
    std::vector<int> out = pool.map(crew_bench::kTrivial, in);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  crew_bench::report_per(state, in.size());
}

void BM_CrewProcessPool_SubmitBulk(benchmark::State& state) {
  const std::size_t tasks = crew_bench::process_bulk_tasks();
  crew::ProcessPool pool(crew_bench::process_pool_options(crew_bench::kThreads));
  std::vector<crew::Future<int>> futures;
  futures.reserve(tasks);
  std::int64_t sum = 0;
  const auto run_batch = [&] {
    for (std::size_t i = 0; i < tasks; ++i) {
      futures.push_back(pool.submit(crew_bench::kTrivial, static_cast<int>(i)));
    }
    sum = 0;
    for (auto& future : futures) sum += future.get();
    futures.clear();  // drops the futures (and with them the tasks' states): timed
  };
  run_batch();  // untimed: writes the heap pages shared copy-on-write with the workers once
  for (auto _ : state) {
    run_batch();
    benchmark::DoNotOptimize(sum);
  }
  const auto n = static_cast<std::int64_t>(tasks);
  if (sum != 3 * (n * (n - 1) / 2) + n) state.SkipWithError("wrong sum of task results");
  crew_bench::report_per(state, tasks, "task");
}

void BM_CrewProcessPool_SubmitRoundTrip(benchmark::State& state) {
  crew::ProcessPool pool(crew_bench::process_pool_options(crew_bench::kThreads));
  int x = 0;
  for (auto _ : state) {
    x = pool.submit(crew_bench::kTrivial, x).get() & 0xffff;
    benchmark::DoNotOptimize(x);
  }
  // x ↦ (3x + 1) & 0xffff from 0, as many times as the loop ran.
  int expected = 0;
  for (benchmark::IterationCount i = 0; i < state.iterations(); ++i) {
    expected = crew_bench::kTrivial(expected) & 0xffff;
  }
  if (x != expected) state.SkipWithError("wrong task result");
  crew_bench::report_per(state, 1, "task");
}

void BM_CrewProcessPool_StartStop(benchmark::State& state) {
  benchmark::DoNotOptimize(crew_bench::map_input().data());
  const double host_mib = resident_mib();
  std::size_t workers_seen = 0;
  for (auto _ : state) {
    crew::ProcessPool pool(crew_bench::process_pool_options(crew_bench::kThreads));
    workers_seen = pool.worker_count();
  }  // ~ProcessPool: shutdown(wait) returns once the zygote and every worker are reaped
  if (workers_seen != static_cast<std::size_t>(crew_bench::kThreads)) {
    state.SkipWithError("wrong worker count");
  }
  state.counters["host_rss_mib"] = host_mib;
}

void BM_CrewProcessPool_StartFirstTaskStop(benchmark::State& state) {
  benchmark::DoNotOptimize(crew_bench::map_input().data());
  const double host_mib = resident_mib();
  int result = 0;
  for (auto _ : state) {
    crew::ProcessPool pool(crew_bench::process_pool_options(crew_bench::kThreads));
    result = pool.submit(crew_bench::kTrivial, 41).get();
    benchmark::DoNotOptimize(result);
  }
  if (result != crew_bench::kTrivial(41)) state.SkipWithError("wrong task result");
  state.counters["host_rss_mib"] = host_mib;
}

// The task of the timeout benchmarks: never returns. pause() returns after each signal a handler
// caught (a worker's parent-check tick is one), so it loops.
int sleep_forever(int) {
  for (;;) ::pause();
}

int sleep_forever_ignoring_sigterm(int) {
  ::signal(SIGTERM, SIG_IGN);  // this worker is killed and replaced: the change dies with it
  for (;;) ::pause();
}

// Times submit → the Future settled with crew::TaskTimeout, per iteration (manual time), and
// reports overshoot_ms: that time minus the 50 ms timeout, averaged; and its largest value. The
// deadline starts when the dispatcher sends the task, a few µs after submit: the overshoot
// measured from submit is an upper bound.
void run_timeout_overshoot(benchmark::State& state, int (*task)(int)) {
  crew::ProcessPoolOptions options = crew_bench::process_pool_options(crew_bench::kThreads);
  options.task_timeout = kTaskTimeout;
  crew::ProcessPool pool(options);
  double overshoot_total_ms = 0;
  double overshoot_max_ms = 0;
  for (auto _ : state) {
    // Untimed (manual time): an idle worker is there, so the task is sent at once.
    if (pool.submit(crew_bench::kTrivial, 1).get() != crew_bench::kTrivial(1)) {
      state.SkipWithError("wrong task result");
      return;
    }
    const auto start = Clock::now();
    crew::Future<int> future = pool.submit(task, 0);
    bool timed_out = false;
    try {
      (void)future.get();
    } catch (const crew::TaskTimeout&) {
      timed_out = true;
    }
    const std::chrono::duration<double> took = Clock::now() - start;
    if (!timed_out) {
      state.SkipWithError("the task did not fail with crew::TaskTimeout");
      return;
    }
    state.SetIterationTime(took.count());
    const double overshoot_ms =
        std::chrono::duration<double, std::milli>(took - kTaskTimeout).count();
    overshoot_total_ms += overshoot_ms;
    if (overshoot_ms > overshoot_max_ms) overshoot_max_ms = overshoot_ms;
  }
  state.counters["overshoot_ms"] =
      benchmark::Counter(overshoot_total_ms, benchmark::Counter::kAvgIterations);
  state.counters["overshoot_max_ms"] = overshoot_max_ms;
  state.counters["timeouts"] = static_cast<double>(pool.stats().timeouts);
}

void BM_CrewProcessPool_TimeoutOvershoot(benchmark::State& state) {
  run_timeout_overshoot(state, sleep_forever);
}

void BM_CrewProcessPool_TimeoutOvershootTermIgnored(benchmark::State& state) {
  run_timeout_overshoot(state, sleep_forever_ignoring_sigterm);
}

BENCHMARK(BM_CrewProcessPool_Map)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(crew_bench::kThreads)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CrewProcessPool_SubmitBulk)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CrewProcessPool_SubmitRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_CrewProcessPool_StartStop)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_CrewProcessPool_StartFirstTaskStop)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_CrewProcessPool_TimeoutOvershoot)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_CrewProcessPool_TimeoutOvershootTermIgnored)
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

}  // namespace
