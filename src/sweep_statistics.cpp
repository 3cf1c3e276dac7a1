// The statistics of repeated runs: summaries, outliers, run counts, intervals and noise signs.
#include "crew/sweep_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "crew/sweep.hpp"

namespace crew::sweep {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom.
constexpr double kT95[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                           2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                           2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};

// σ² / n: the variance of the mean.
double variance_of_mean(const Statistics& s) {
  return s.stddev * s.stddev / static_cast<double>(s.runs);
}

}  // namespace

double Statistics::relative_standard_error() const noexcept {
  if (!spread_known() || mean <= 0) return kInfinity;
  return stddev / std::sqrt(static_cast<double>(runs)) / mean;
}

double Statistics::ci95_half_width() const noexcept {
  if (!spread_known()) return kInfinity;
  return student_t95(static_cast<double>(runs - 1)) * stddev / std::sqrt(static_cast<double>(runs));
}

double student_t95(double degrees_of_freedom) noexcept {
  if (!(degrees_of_freedom >= 1)) return kInfinity;
  const double whole = std::floor(degrees_of_freedom);
  if (whole <= static_cast<double>(std::size(kT95)))
    return kT95[static_cast<std::size_t>(whole) - 1];
  if (whole <= 60) return 2.000;
  if (whole <= 120) return 1.980;
  return 1.960;
}

std::vector<double> modified_z_scores(std::span<const double> values) {
  if (values.empty()) return {};
  const double mid = median({values.begin(), values.end()});
  std::vector<double> deviations;
  deviations.reserve(values.size());
  for (const double x : values) deviations.push_back(std::abs(x - mid));
  double mad = median(deviations);
  if (!(mad > 0)) mad = std::numeric_limits<double>::epsilon();
  std::vector<double> scores;
  scores.reserve(values.size());
  for (const double x : values) scores.push_back((x - mid) / mad);
  return scores;
}

Statistics describe(std::span<const double> values) {
  Statistics s;
  s.runs = values.size();
  if (values.empty()) return s;
  const auto [lo, hi] = std::ranges::minmax(values);
  s.min = lo;
  s.max = hi;
  s.median = median({values.begin(), values.end()});
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(s.runs);
  if (s.runs >= 2) {
    double squares = 0;
    for (const double x : values) squares += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(squares / static_cast<double>(s.runs - 1));
  }
  // Two runs cannot single one out, and hyperfine's MAD of 0 would make the other an outlier.
  if (s.runs >= 3) {
    for (const double z : modified_z_scores(values)) {
      if (std::abs(z) > kOutlierThreshold) ++s.outliers;
    }
  }
  return s;
}

bool wants_another_run(const RunPolicy& policy, std::span<const double> walls) noexcept {
  const std::size_t n = walls.size();
  if (n < policy.min_runs) return true;
  if (n >= policy.max_runs) return false;
  const double spent = std::accumulate(walls.begin(), walls.end(), 0.0);
  if (spent >= policy.max_time.count()) return false;
  const double mean = spent / static_cast<double>(n);
  if (n < 2 || mean <= 0) return n < 2;
  double squares = 0;
  for (const double x : walls) squares += (x - mean) * (x - mean);
  const double rse =
      std::sqrt(squares / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n)) / mean;
  return rse > policy.target_rse;
}

Ratio speedup(const Statistics& serial, const Statistics& point) noexcept {
  Ratio r;
  if (serial.mean <= 0 || point.mean <= 0) return r;
  r.value = serial.mean / point.mean;
  if (!serial.spread_known() || !point.spread_known()) return r;
  // The relative error of a ratio is close to the root of the sum of the squared relative
  // errors; taken on the logarithm, the interval stays positive and skews as a ratio does.
  const double rse_serial = serial.relative_standard_error();
  const double rse_point = point.relative_standard_error();
  const double se_log = std::sqrt(rse_serial * rse_serial + rse_point * rse_point);
  const double t = student_t95(static_cast<double>(std::min(serial.runs, point.runs) - 1));
  r.low = r.value * std::exp(-t * se_log);
  r.high = r.value * std::exp(t * se_log);
  return r;
}

Difference compare(const Statistics& a, const Statistics& b) noexcept {
  if (!a.spread_known() || !b.spread_known()) return Difference::kUnknown;
  const double va = variance_of_mean(a);
  const double vb = variance_of_mean(b);
  const double se = std::sqrt(va + vb);
  if (!(se > 0)) {
    if (a.mean == b.mean) return Difference::kWithinNoise;
    return a.mean < b.mean ? Difference::kFaster : Difference::kSlower;
  }
  // Welch–Satterthwaite degrees of freedom.
  const double df =
      (va + vb) * (va + vb) /
      (va * va / static_cast<double>(a.runs - 1) + vb * vb / static_cast<double>(b.runs - 1));
  const double t = (b.mean - a.mean) / se;
  const double critical = student_t95(df);
  if (t > critical) return Difference::kFaster;
  if (t < -critical) return Difference::kSlower;
  return Difference::kWithinNoise;
}

std::vector<std::string> noise_warnings(const NoiseSigns& signs) {
  std::vector<std::string> warnings;
  if (signs.cpu_bound_job && signs.serial_cpu_per_wall > 0 &&
      signs.serial_cpu_per_wall < kBusySerialCpuPerWall) {
    warnings.push_back(fmt::format(
        "busy machine: the serial run of this CPU-only job got {:.2f} CPU per wall second (1 on an "
        "idle machine); other programs took the rest, so every speed-up over it is inflated",
        signs.serial_cpu_per_wall));
  }
  const double cores = static_cast<double>(std::max<std::size_t>(signs.cores, 1));
  if (signs.other_load >= kBusyOtherLoad * cores) {
    warnings.push_back(
        fmt::format("busy machine: other programs kept {:.1f} of the {} cores busy during the "
                    "sweep; rerun on a "
                    "quiet machine for figures you can trust",
                    signs.other_load, signs.cores));
  }
  if (signs.outlier_runs > 0) {
    warnings.push_back(fmt::format(
        "{} run{} {} statistical outlier{} (modified Z-score over {:.1f}): something else ran at "
        "the same time; rerun on a quiet machine",
        signs.outlier_runs, signs.outlier_runs == 1 ? "" : "s",
        signs.outlier_runs == 1 ? "was a" : "were", signs.outlier_runs == 1 ? "" : "s",
        kOutlierThreshold));
  }
  return warnings;
}

}  // namespace crew::sweep
