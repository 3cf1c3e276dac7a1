// The sweep's measuring loop driven by a recorded sampler (no job runs, nothing is timed): warm-ups
// are thrown away, --repeat is exact, adaptive runs stop at the target error or the budget, a stop
// keeps what finished, and the progress reaches what it expected.
#include "crew/sweep_runner.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "support/leak_guard.hpp"

namespace crew::sweep {
namespace {

using namespace std::chrono_literals;

// Plays back walls per engine × workers in turn (the last one again when they run out), and
// counts the calls.
class Recorded {
 public:
  void set(const std::string& engine, std::size_t workers, std::vector<double> walls) {
    walls_[{engine, workers}] = std::move(walls);
  }
  Sampler sampler() {
    return [this](const std::string& engine, std::size_t workers) -> std::optional<Sample> {
      auto& walls = walls_.at({engine, workers});
      std::size_t& next = calls_[{engine, workers}];
      const double wall = walls[std::min(next, walls.size() - 1)];
      ++next;
      return Sample{.wall_s = wall, .cpu_s = wall, .peak_rss_bytes = 1};
    };
  }
  std::size_t calls(const std::string& engine, std::size_t workers) {
    return calls_[{engine, workers}];
  }

 private:
  std::map<std::pair<std::string, std::size_t>, std::vector<double>> walls_;
  std::map<std::pair<std::string, std::size_t>, std::size_t> calls_;
};

SweepSpec spec(RunPolicy policy) {
  return {.job = "cpu",
          .description = "recorded",
          .cores = 2,
          .engines = {"thread"},
          .workers = {2},
          .policy = policy,
          .cpu_bound_job = true};
}

TEST(SweepRunnerTest, WarmupsAreThrownAwayAndRepeatIsExact) {
  Recorded recorded;
  // The first run of each point is a slow warm-up (cold caches, first fork).
  recorded.set("serial", 1, {9.0, 1.0, 1.01, 0.99});
  recorded.set("thread", 2, {9.0, 0.5, 0.9, 0.1});
  const Sweep sweep = run_sweep(spec(RunPolicy::exactly(3, 1)), recorded.sampler(), {});
  EXPECT_EQ(recorded.calls("serial", 1), 4U);
  EXPECT_EQ(recorded.calls("thread", 2), 4U) << "noisy, but exactly 3 counted runs";
  ASSERT_EQ(sweep.serial.samples.size(), 3U);
  EXPECT_NEAR(sweep.serial.wall_s, 1.0, 1e-12) << "the 9 s warm-up is not counted";
  ASSERT_EQ(sweep.points.size(), 1U);
  EXPECT_NEAR(sweep.points[0].wall_s, 0.5, 1e-12);
  EXPECT_NEAR(sweep.points[0].speedup, 2.0, 1e-12);
  EXPECT_TRUE(sweep.points[0].speedup_interval.interval_known());
  EXPECT_EQ(sweep.repeat, 3U);
  EXPECT_TRUE(sweep.cpu_bound_job);
  EXPECT_FALSE(sweep.interrupted);
}

TEST(SweepRunnerTest, AdaptiveRunsStopAtTheTargetErrorOrTheBudget) {
  Recorded recorded;
  recorded.set("serial", 1, {1.000, 1.001, 0.999, 1.000});  // clean: 3 runs reach 2 %
  recorded.set("thread", 2, {0.30, 0.70, 0.20, 0.90, 0.25, 0.75, 0.30, 0.70});  // noisy
  const RunPolicy policy{
      .warmup = 0, .min_runs = 3, .max_runs = 20, .target_rse = 0.02, .max_time = 2s};
  const Sweep sweep = run_sweep(spec(policy), recorded.sampler(), {});
  EXPECT_EQ(sweep.serial.samples.size(), 3U) << "clean: min_runs is enough";
  // Noisy: it never reaches 2 %, so it runs until 2 s of runs are spent (0.3 + 0.7 + 0.2 + 0.9).
  EXPECT_EQ(sweep.points[0].samples.size(), 4U);
  EXPECT_EQ(sweep.repeat, 0U) << "adaptive";
}

TEST(SweepRunnerTest, AStoppedSampleKeepsWhatFinished) {
  Recorded recorded;
  recorded.set("serial", 1, {1.0});
  std::size_t calls = 0;
  const Sampler base = recorded.sampler();
  // The third run is cut short: serial ran once, thread never.
  const Sampler stopping = [&](const std::string& engine,
                               std::size_t workers) -> std::optional<Sample> {
    if (++calls == 2) return std::nullopt;
    return base(engine, workers);
  };
  const Sweep sweep = run_sweep(spec(RunPolicy::exactly(3, 0)), stopping, {});
  EXPECT_TRUE(sweep.interrupted);
  EXPECT_EQ(sweep.serial.samples.size(), 1U);
  EXPECT_TRUE(sweep.points.empty()) << "a point without runs is dropped";
}

TEST(SweepRunnerTest, ProgressEndsWhereItExpected) {
  Recorded recorded;
  recorded.set("serial", 1, {1.0, 1.0, 1.0});
  recorded.set("thread", 2, {0.5, 0.5, 0.5});
  std::vector<std::pair<std::size_t, std::size_t>> seen;
  (void)run_sweep(
      spec(RunPolicy::exactly(2, 1)), recorded.sampler(), {},
      [&](std::size_t done, std::size_t expected) { seen.emplace_back(done, expected); });
  ASSERT_EQ(seen.size(), 6U);  // (1 warm-up + 2 runs) × 2 points
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].first, i + 1);
    EXPECT_EQ(seen[i].second, 6U);
  }
}

TEST(SweepRunnerTest, WorstCaseCountsWarmupsAndTheBudget) {
  EXPECT_DOUBLE_EQ(worst_case_seconds(RunPolicy::exactly(3, 1), 0.5), 2.0);
  const RunPolicy policy{
      .warmup = 1, .min_runs = 3, .max_runs = 20, .target_rse = 0.02, .max_time = 2s};
  EXPECT_DOUBLE_EQ(worst_case_seconds(policy, 0.1), (20 + 1) * 0.1) << "2 s / 0.1 s = 20 runs";
  EXPECT_DOUBLE_EQ(worst_case_seconds(policy, 1.0), (3 + 1) * 1.0) << "min_runs past the budget";
  EXPECT_DOUBLE_EQ(worst_case_seconds(policy, 0.01), (20 + 1) * 0.01) << "max_runs";
}

TEST(SweepRunnerTest, RejectsAPolicyWithoutRuns) {
  Recorded recorded;
  RunPolicy policy;
  policy.min_runs = 0;
  EXPECT_THROW((void)run_sweep(spec(policy), recorded.sampler(), {}), std::invalid_argument);
}

}  // namespace
}  // namespace crew::sweep
