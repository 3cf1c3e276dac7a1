// The statistics of repeated runs, as hyperfine does them: how many runs to make (warm-up, then
// until the relative standard error of the mean is small or a time budget ends), mean ± σ and
// min … max, outliers by modified Z-score, the 95 % interval of a speed-up, whether one set of
// runs is faster than another beyond the noise, and the signs of a busy machine.
//
// Pure functions of recorded figures: nothing here measures, so every rule is tested on figures
// (tests/sweep_statistics_test.cpp). `crew bench` and `crew demo` run the jobs and ask these.
// Blocks: never. Thread safety: every function is pure (no shared state); safe from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace crew::sweep {

// Mean ± σ, min … max and median of a set of runs (wall seconds, mostly).
struct Statistics {
  std::size_t runs = 0;
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); 0 and meaningless for fewer than 2 runs
  double min = 0;
  double max = 0;
  double median = 0;
  std::size_t outliers = 0;  // runs whose modified Z-score passes kOutlierThreshold

  // One run tells nothing of the spread: every interval below is unknown then.
  [[nodiscard]] bool spread_known() const noexcept { return runs >= 2; }
  // σ / √n / mean: the relative standard error of the mean; +infinity when the spread is unknown
  // or the mean is not positive.
  [[nodiscard]] double relative_standard_error() const noexcept;
  // Half the width of the 95 % confidence interval of the mean (Student's t); +infinity when the
  // spread is unknown.
  [[nodiscard]] double ci95_half_width() const noexcept;
};

// The statistics of `values`, all zero for none. Throws: nothing but std::bad_alloc.
[[nodiscard]] Statistics describe(std::span<const double> values);

// The two-sided 95 % quantile of Student's t with `degrees_of_freedom` (12.71 for 1, 1.96 for
// many); +infinity for 0. Rounds fractional degrees down, which widens the interval.
[[nodiscard]] double student_t95(double degrees_of_freedom) noexcept;

// hyperfine's outlier rule: (x - median) / MAD, a run is an outlier past 1.4826 × 10 (ten
// standard deviations of a normal spread). A MAD of 0 counts as the smallest double, as there.
inline constexpr double kOutlierThreshold = 1.4826 * 10.0;
[[nodiscard]] std::vector<double> modified_z_scores(std::span<const double> values);

// How many runs each point gets. The defaults are `crew bench`'s.
struct RunPolicy {
  std::size_t warmup = 1;     // runs made first and thrown away (caches, page faults, forks)
  std::size_t min_runs = 3;   // at least this many counted runs
  std::size_t max_runs = 20;  // at most this many
  double target_rse = 0.02;   // stop once σ/√n/mean is at or below this …
  std::chrono::duration<double> max_time{2.0};  // … or once the counted runs took this long

  // --repeat N: exactly N counted runs, whatever their spread or time.
  [[nodiscard]] static RunPolicy exactly(std::size_t runs, std::size_t warmup = 1) noexcept {
    return {.warmup = warmup,
            .min_runs = runs,
            .max_runs = runs,
            .target_rse = 0,
            .max_time = std::chrono::duration<double>::max()};
  }
  [[nodiscard]] bool exact() const noexcept { return min_runs == max_runs; }
};

// Whether a point whose counted runs took `walls` (seconds, in order) needs one more: below
// min_runs yes; at max_runs or past max_time no; otherwise while the relative standard error is
// above target_rse. Throws: nothing.
[[nodiscard]] bool wants_another_run(const RunPolicy& policy,
                                     std::span<const double> walls) noexcept;

// A ratio of two means (a speed-up: serial's mean wall / a point's mean wall) with its 95 %
// interval, from the relative standard errors of both (delta method on the logarithm, Student's t
// at the smaller count's degrees of freedom). low and high are nullopt when either spread is
// unknown; value is 0 when either mean is not positive.
struct Ratio {
  double value = 0;
  std::optional<double> low;
  std::optional<double> high;
  [[nodiscard]] bool interval_known() const noexcept { return low.has_value(); }
};
[[nodiscard]] Ratio speedup(const Statistics& serial, const Statistics& point) noexcept;

// How the mean of `a` compares with the mean of `b` (walls: smaller is faster), by Welch's t-test
// at 95 %: kUnknown when either has fewer than 2 runs.
enum class Difference { kFaster, kSlower, kWithinNoise, kUnknown };
[[nodiscard]] Difference compare(const Statistics& a, const Statistics& b) noexcept;

// A speed-up over serial whose efficiency (speed-up / workers) passes this is noise, not a
// finding: w workers cannot do a serial loop's work more than w times faster, so the baseline was
// slowed (a busy machine, a clock that changed speed).
inline constexpr double kMaxEfficiency = 1.0;
// A job known to use only the CPU whose serial run got less CPU than this per wall second shared
// its CPU with other programs (the demo: 0.56).
inline constexpr double kBusySerialCpuPerWall = 0.85;
// Other programs keeping at least this share of the cores busy during a sweep (from /proc/stat
// minus this process's own CPU) make every figure suspect.
inline constexpr double kBusyOtherLoad = 0.25;

// What made a set of figures untrustworthy, one sentence each ("the serial run got 0.56 CPU per
// wall second: …"); empty when nothing was seen.
struct NoiseSigns {
  bool cpu_bound_job = false;  // the job is known to use only the CPU (primes, synthetic CPU)
  double serial_cpu_per_wall = 0;
  double other_load = 0;  // CPUs other programs kept busy, on average; 0 when unknown
  std::size_t cores = 1;
  std::size_t outlier_runs = 0;  // over every point
};
[[nodiscard]] std::vector<std::string> noise_warnings(const NoiseSigns& signs);

}  // namespace crew::sweep
