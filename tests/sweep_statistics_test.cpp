// The statistics of repeated runs on recorded figures: mean ± σ, outliers (hyperfine's modified
// Z-score), when to stop running, the interval of a speed-up, Welch's comparison and the signs of
// a busy machine. Nothing here is timed.
#include "crew/sweep_statistics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "support/leak_guard.hpp"

namespace crew::sweep {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Five clean runs (±0.3 %) and five noisy ones (±35 %) of about the same mean.
const std::vector<double> kClean = {0.1000, 0.1003, 0.0997, 0.1002, 0.0998};
const std::vector<double> kNoisy = {0.100, 0.135, 0.065, 0.120, 0.080};

TEST(SweepStatisticsTest, DescribeGivesMeanSigmaMinMaxAndMedian) {
  const Statistics s = describe(std::vector<double>{1.0, 2.0, 4.0});
  EXPECT_EQ(s.runs, 3u);
  EXPECT_NEAR(s.mean, 7.0 / 3, 1e-12);
  EXPECT_NEAR(s.stddev,
              std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) +
                         (4 - 7.0 / 3) * (4 - 7.0 / 3)) /
                        2),
              1e-12);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 4.0);
  EXPECT_EQ(s.median, 2.0);
  EXPECT_EQ(s.outliers, 0u);
  EXPECT_TRUE(s.spread_known());
  EXPECT_NEAR(s.relative_standard_error(), s.stddev / std::sqrt(3.0) / s.mean, 1e-12);
  EXPECT_NEAR(s.ci95_half_width(), 4.303 * s.stddev / std::sqrt(3.0), 1e-9);
}

TEST(SweepStatisticsTest, OneRunHasNoKnownSpread) {
  const Statistics s = describe(std::vector<double>{0.5});
  EXPECT_FALSE(s.spread_known());
  EXPECT_TRUE(std::isinf(s.relative_standard_error()));
  EXPECT_TRUE(std::isinf(s.ci95_half_width()));
  EXPECT_EQ(describe(std::vector<double>{}).runs, 0u);
}

TEST(SweepStatisticsTest, StudentTNarrowsWithMoreRuns) {
  EXPECT_DOUBLE_EQ(student_t95(1), 12.706);
  EXPECT_DOUBLE_EQ(student_t95(4), 2.776);
  EXPECT_DOUBLE_EQ(student_t95(4.9), 2.776) << "fractional degrees round down (wider)";
  EXPECT_DOUBLE_EQ(student_t95(1000), 1.96);
  EXPECT_TRUE(std::isinf(student_t95(0)));
}

TEST(SweepStatisticsTest, AFarRunIsAnOutlierAsHyperfineCountsThem) {
  // Nine runs near 100 ms and one of 400 ms: another program woke up during it.
  const std::vector<double> walls = {0.100, 0.101, 0.099, 0.100, 0.102,
                                     0.098, 0.100, 0.101, 0.099, 0.400};
  const std::vector<double> z = modified_z_scores(walls);
  ASSERT_EQ(z.size(), walls.size());
  EXPECT_GT(z.back(), kOutlierThreshold);
  EXPECT_EQ(describe(walls).outliers, 1u);
  EXPECT_EQ(describe(kNoisy).outliers, 0u) << "a wide spread is not an outlier";
}

TEST(SweepStatisticsTest, RunsGoOnUntilTheErrorIsSmallOrTheTimeIsUp) {
  const RunPolicy policy{
      .warmup = 1, .min_runs = 3, .max_runs = 10, .target_rse = 0.02, .max_time = 2s};
  EXPECT_TRUE(wants_another_run(policy, std::vector<double>{0.1, 0.1}))
      << "below min_runs, whatever the spread";
  EXPECT_FALSE(wants_another_run(policy, kClean)) << "RSE 0.1 % ≤ 2 %";
  EXPECT_TRUE(wants_another_run(policy, kNoisy)) << "RSE ≈ 13 % > 2 %";
  EXPECT_FALSE(wants_another_run(policy, std::vector<double>{0.5, 1.0, 0.6, 0.1}))
      << "2.2 s spent ≥ max_time 2 s";
  std::vector<double> ten(10, 0.01);
  ten[0] = 0.02;
  EXPECT_FALSE(wants_another_run(policy, ten)) << "max_runs reached";
}

TEST(SweepStatisticsTest, RepeatMeansExactlyThatManyRuns) {
  const RunPolicy policy = RunPolicy::exactly(3, 0);
  EXPECT_TRUE(policy.exact());
  EXPECT_EQ(policy.warmup, 0u);
  EXPECT_TRUE(wants_another_run(policy, std::vector<double>{0.1, 0.1}));
  EXPECT_FALSE(wants_another_run(policy, std::vector<double>{0.1, 0.5, 0.9}))
      << "noisy, but three is what was asked";
  EXPECT_TRUE(wants_another_run(RunPolicy::exactly(1), std::vector<double>{}));
  EXPECT_FALSE(wants_another_run(RunPolicy::exactly(1), std::vector<double>{5.0}));
}

TEST(SweepStatisticsTest, SpeedupIntervalWidensWithNoise) {
  const Statistics serial = describe(std::vector<double>{0.2000, 0.2004, 0.1996, 0.2002, 0.1998});
  const Ratio clean = speedup(serial, describe(kClean));
  EXPECT_NEAR(clean.value, 2.0, 1e-3);
  ASSERT_TRUE(clean.interval_known());
  EXPECT_LT(*clean.low, 2.0);
  EXPECT_GT(*clean.high, 2.0);
  EXPECT_LT(*clean.high - *clean.low, 0.02);

  const Ratio noisy = speedup(serial, describe(kNoisy));
  ASSERT_TRUE(noisy.interval_known());
  EXPECT_LT(*noisy.low, 1.6);
  EXPECT_GT(*noisy.high, 2.4);

  const Ratio one_run = speedup(serial, describe(std::vector<double>{0.1}));
  EXPECT_NEAR(one_run.value, 2.0, 1e-3);
  EXPECT_FALSE(one_run.interval_known()) << "one run: no interval, not ±0";
}

TEST(SweepStatisticsTest, WelchTellsADifferenceFromNoise) {
  const Statistics fast = describe(kClean);
  const Statistics slow = describe(std::vector<double>{0.1100, 0.1102, 0.1098, 0.1101, 0.1099});
  EXPECT_EQ(compare(fast, slow), Difference::kFaster);
  EXPECT_EQ(compare(slow, fast), Difference::kSlower);
  EXPECT_EQ(compare(describe(kNoisy), slow), Difference::kWithinNoise)
      << "a 10 % gap inside a ±35 % spread";
  EXPECT_EQ(compare(describe(std::vector<double>{0.05}), slow), Difference::kUnknown);
}

TEST(SweepStatisticsTest, TheDemosSerialCpuPerWallOfFiftySixHundredthsIsABusyMachine) {
  const std::vector<std::string> warnings =
      noise_warnings({.cpu_bound_job = true, .serial_cpu_per_wall = 0.56, .cores = 2});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("busy machine: the serial run of this CPU-only job got 0.56"));
  EXPECT_TRUE(noise_warnings({.cpu_bound_job = false, .serial_cpu_per_wall = 0.02}).empty())
      << "an IO job waits: low CPU/wall is its nature";
  EXPECT_TRUE(noise_warnings({.cpu_bound_job = true, .serial_cpu_per_wall = 0.99}).empty());
}

TEST(SweepStatisticsTest, OtherProgramsLoadAndOutliersAreWarnedAbout) {
  const std::vector<std::string> warnings =
      noise_warnings({.other_load = 1.2, .cores = 2, .outlier_runs = 2});
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("other programs kept 1.2 of the 2 cores busy"));
  EXPECT_THAT(warnings[1], HasSubstr("2 runs were statistical outliers"));
  EXPECT_TRUE(noise_warnings({.other_load = 0.1, .cores = 2}).empty());
}

}  // namespace
}  // namespace crew::sweep
