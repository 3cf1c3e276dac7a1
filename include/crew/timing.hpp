// Timing a block of code the way IPython's %%time does, plus what %%time leaves out: the CPU time
// of child processes (a process pool's workers) and the block's peak memory.
//
//   crew::Timing t = crew::timed([&] { pool.map(is_prime, numbers); });
//   fmt::print("{}", crew::format_timing(t));
//
// What each figure means (all are differences between the block's end and its start):
//   wall           steady_clock, so a clock step (NTP, settimeofday) cannot distort it.
//   user, sys      getrusage(RUSAGE_SELF): every thread of this process, including threads
//                  the block did not start (other threads' concurrent work is counted too).
//   children_*     getrusage(RUSAGE_CHILDREN): only children that terminated *and were waited for*
//                  (waitpid/wait4) between start and end, and the descendants they waited for.
//                  Workers still alive at the end are not in it; a pool reports those itself.
//   peak_rss_bytes see Timing::peak_rss_is_block_peak.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace crew {

// What a block cost. Durations are never negative for a Timing produced by Stopwatch.
struct Timing {
  // Elapsed real time, from std::chrono::steady_clock.
  std::chrono::nanoseconds wall{};
  // CPU time of this process (all threads) in user and kernel mode during the block.
  std::chrono::nanoseconds user{};
  std::chrono::nanoseconds sys{};
  // CPU time of child processes reaped during the block (see the file comment).
  std::chrono::nanoseconds children_user{};
  std::chrono::nanoseconds children_sys{};
  // Peak resident set size of this process. Child processes' memory is not included.
  std::int64_t peak_rss_bytes = 0;
  // true: the peak was reset when the block started (/proc/self/clear_refs "5") and
  // peak_rss_bytes is the highest RSS reached during the block (VmHWM). false: the reset or the
  // read-back failed and peak_rss_bytes is the process-lifetime peak (ru_maxrss), which may predate
  // the block.
  bool peak_rss_is_block_peak = false;

  // user + sys + children_user + children_sys: everything the block cost in CPU.
  [[nodiscard]] std::chrono::nanoseconds cpu() const;
  // cpu() / wall: about 1 for a serial CPU-bound block, about N for N busy workers, near 0 for a
  // block that waits on IO. 0 when wall is 0.
  [[nodiscard]] double parallelism() const;
};

// A value computed by a timed block, and what computing it cost.
template <class T>
struct Timed {
  T value;
  Timing timing;
};

namespace detail {
struct PeakRssWatch;
}  // namespace detail

// Measures from its construction to each call of elapsed().
//
// Peak RSS: construction resets the kernel's per-process high-water mark, which is process-wide.
// Several Stopwatches alive at once (nested, or one per thread) still each report their own peak:
// before a reset, crew folds the old high-water mark into every live Stopwatch. A reset done
// outside crew (another write to /proc/self/clear_refs) during a block makes that block's peak
// too low.
//
// Thread safety: a Stopwatch may be constructed, copied and have elapsed() called from any thread;
// const member functions may run concurrently. Copies share the start point and the peak.
class Stopwatch {
 public:
  // Starts: resets the peak RSS (failure is tolerated and shows as peak_rss_is_block_peak ==
  // false), samples getrusage for self and children, then reads steady_clock.
  // Blocks: on two small /proc accesses (a few microseconds). Throws: std::bad_alloc only.
  Stopwatch();

  // What the block has cost so far. May be called any number of times.
  // Blocks: on a read of /proc/self/status. Throws: std::bad_alloc only.
  [[nodiscard]] Timing elapsed() const;

 private:
  std::chrono::steady_clock::time_point start_wall_;
  std::chrono::nanoseconds start_user_{};
  std::chrono::nanoseconds start_sys_{};
  std::chrono::nanoseconds start_children_user_{};
  std::chrono::nanoseconds start_children_sys_{};
  // Null when the peak reset failed at construction.
  std::shared_ptr<detail::PeakRssWatch> peak_;
};

// Runs fn() once and measures it with a Stopwatch. Returns a Timing when fn returns void, else a
// Timed<R> holding fn's result (R exactly as fn returns it; a reference stays a reference).
// The measurement ends before the result is moved anywhere.
// Blocks: for as long as fn runs. Throws: whatever fn throws, unchanged (no Timing is produced).
// Thread safety: as fn.
template <class F>
[[nodiscard]] auto timed(F&& fn) {
  using R = std::invoke_result_t<F>;
  Stopwatch watch;
  if constexpr (std::is_void_v<R>) {
    std::invoke(std::forward<F>(fn));
    return watch.elapsed();
  } else {
    // Braced initialisation runs left to right: the value is built in place first, then the clock
    // is read, so neither a copy of the result nor its move is measured.
    return Timed<R>{std::invoke(std::forward<F>(fn)), watch.elapsed()};
  }
}

// A duration as IPython's %%time prints it: three significant digits and the largest unit that
// keeps the number ≥ 1 ("0 ns", "512 ns", "1.5 µs", "8.27 ms", "122 ms", "3.83 s"); 60 s and above
// as whole units, like IPython's _format_time ("1min 3s", "2h 5s", "1d 3h"; seconds truncated).
// Unlike IPython, the unit is chosen after rounding, so 999.6 µs prints "1 ms", not "1e+03 µs".
// Negative durations get a leading '-'. The micro sign is U+00B5 in UTF-8, as IPython prints it.
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] std::string format_duration(std::chrono::nanoseconds d);

// A byte count in binary units with three significant digits: "0 B", "512 B", "1.5 KiB",
// "3.4 MiB", "64 MiB", "1.02 GiB". Negative counts get a leading '-'.
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] std::string format_bytes(std::int64_t bytes);

// Four lines, each ending in '\n'. The first two are IPython's %%time lines, same shape:
//   CPU times: user 122 ms, sys: 8.27 ms, total: 130 ms   <- this process only; total = user+sys
//   Wall time: 3.83 s
// then two lines IPython lacks:
//   Workers' CPU (child processes): user 0 ns, sys: 0 ns  <- children reaped during the block
//   CPU/wall: 0.03 (effective parallelism)   Peak RSS: 3.4 MiB
// CPU/wall is Timing::parallelism(), children included. When the peak is not the block's own, the
// last line says "Peak RSS: 3.4 MiB (process lifetime)".
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] std::string format_timing(const Timing& t);

}  // namespace crew
