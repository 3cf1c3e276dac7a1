// Shared settings of crew_bench: problem sizes (full or smoke), thread counts, the workloads'
// trivial function and the counters every benchmark reports.
//
// CREW_BENCH_SMOKE=1 (set by the bench_smoke ctest) shrinks every size so the whole binary runs in
// seconds: the smoke run checks that each benchmark still builds, runs and computes the right
// answer, not how fast it is.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "crew/options.hpp"
#include "crew/workloads/primes.hpp"

namespace crew_bench {

// True when the environment variable CREW_BENCH_SMOKE is set to anything but "" or "0". Read
// once; safe to call during static initialization (benchmark registration). Defined in main.cpp.
bool smoke_mode() noexcept;

// Threads every parallel engine gets: the article's 2-worker pool, and this VM's core count.
inline constexpr int kThreads = 2;

// Returns value, hidden from the optimizer, so a computation on it cannot be hoisted out of the
// timing loop. Use the returned copy (a const local): GCC 12 miscompiles an OpenMP loop bound
// that was itself passed to DoNotOptimize (the loop never ends).
template <class T>
T opaque(T value) {
  benchmark::DoNotOptimize(value);
  return value;
}

// Options of every crew::ProcessPool in the benchmarks: `workers` processes, the rest default.
// The fork-with-threads warning is off: by the time a ProcessPool benchmark runs, this process
// may hold the other engines' idle threads (OpenMP's team, oneTBB's workers), and none of them
// holds a lock a worker takes; left on, it would print one line per pool built.
inline crew::ProcessPoolOptions process_pool_options(std::int64_t workers) {
  return {.workers = static_cast<std::size_t>(workers), .warn_if_threads_running = false};
}

// Primes: the sum of is_prime(i) over [0, N), at two sizes (1e6 and 1e7; smoke: 1e4 and 2e4).
inline std::int64_t primes_small_n() { return smoke_mode() ? 10'000 : 1'000'000; }
inline std::int64_t primes_large_n() { return smoke_mode() ? 20'000 : 10'000'000; }

// The sum of the primes below n: the known answers for 1e6 and 1e7 (issue 3 §4), computed for
// other n. Benchmarks check their result against it outside the timed region.
inline std::int64_t expected_prime_sum(std::int64_t n) {
  if (n == 1'000'000) return 37'550'402'023;
  if (n == 10'000'000) return 3'203'324'994'356;
  return crew::workloads::sum_primes_below(n);
}

// Per-item overhead: map over this many ints (20,000,000; smoke: 20,000).
inline std::size_t map_items() { return smoke_mode() ? 20'000 : 20'000'000; }

// Per-task overhead: tasks submitted in bulk, then all awaited (100,000; smoke: 1,000), and the
// smaller count for one std::thread per task (2,000; smoke: 100).
inline std::size_t bulk_tasks() { return smoke_mode() ? 1'000 : 100'000; }
inline std::size_t thread_tasks() { return smoke_mode() ? 100 : 2'000; }
// Tasks submitted in bulk to a ProcessPool (10,000; smoke: 200): each crosses to a worker process
// and back through the dispatcher, tens of µs apiece on this VM, so 100,000 would take seconds.
inline std::size_t process_bulk_tasks() { return smoke_mode() ? 200 : 10'000; }

// Fetch (bench/fetch/): URLs on a loopback `crew serve` with a fixed latency and body size.
// The article's scenario: its 13 URLs, 200 ms × 50 KiB each, 4 workers (ideal: ⌈13/4⌉ × 200 ms =
// 0.80 s; serial 13 × 200 ms = 2.6 s). Many: 2,000 URLs × 100 ms × 5 KiB at concurrency 50 and
// 500 (ideal: ⌈2,000/C⌉ × 100 ms: 4.0 s and 0.40 s). Smoke: 13 and 50 URLs, 10 ms, concurrency
// 4 and 16.
inline constexpr int kFetchArticleWorkers = 4;
inline constexpr std::size_t kFetchArticleUrls = 13;
inline constexpr std::uint64_t kFetchArticleBodyBytes = 50 * 1024;
inline constexpr std::uint64_t kFetchManyBodyBytes = 5 * 1024;
inline int fetch_article_latency_ms() { return smoke_mode() ? 10 : 200; }
inline int fetch_many_latency_ms() { return smoke_mode() ? 10 : 100; }
inline std::size_t fetch_many_urls() { return smoke_mode() ? 50 : 2'000; }
inline std::vector<std::int64_t> fetch_many_concurrency() {
  return smoke_mode() ? std::vector<std::int64_t>{4, 16} : std::vector<std::int64_t>{50, 500};
}

// The trivial per-item / per-task function of the overhead benchmarks.
inline constexpr auto kTrivial = [](int x) noexcept { return x * 3 + 1; };

// The input of the per-item benchmarks: 0, 1, …, map_items() − 1. Built once, shared.
inline const std::vector<int>& map_input() {
  static const std::vector<int> input = [] {
    std::vector<int> v(map_items());
    std::iota(v.begin(), v.end(), 0);
    return v;
  }();
  return input;
}

// True when out[i] == kTrivial(i) for every input i: checked outside the timed region.
inline bool is_trivial_map_of_input(const std::vector<int>& out) {
  const std::vector<int>& in = map_input();
  if (out.size() != in.size()) return false;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (out[i] != kTrivial(in[i])) return false;
  }
  return true;
}

// Reports `count` items (or tasks) done per iteration: items_per_second, and a counter named
// `per_<what>` holding the time per item (the console shows e.g. "1.02ns"; the JSON holds
// seconds). Both follow the benchmark's own clock (real time for UseRealTime benchmarks).
inline void report_per(benchmark::State& state, std::size_t count, const char* what = "item") {
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(count));
  state.counters[std::string("per_") + what] =
      benchmark::Counter(static_cast<double>(count), benchmark::Counter::kIsIterationInvariantRate |
                                                         benchmark::Counter::kInvert);
}

}  // namespace crew_bench
