// The verdict on noisy figures recorded from `crew bench` and `crew demo` on a loaded machine
// (issue 11, item 13): no "use X" from noise. Nothing here is timed; each sweep is written down.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "crew/sweep.hpp"
#include "support/leak_guard.hpp"

namespace crew::sweep {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::uint64_t kMiB = 1024 * 1024;

Point runs_of(std::string engine, std::size_t workers, std::vector<double> walls,
              double cpu_per_run = 0) {
  Point p;
  p.engine = std::move(engine);
  p.workers = workers;
  for (const double wall : walls) {
    p.samples.push_back({.wall_s = wall, .cpu_s = cpu_per_run, .peak_rss_bytes = 10 * kMiB});
  }
  return p;
}

// Summarizes serial and every point as `crew bench` does.
Sweep summarized(Point serial, std::vector<Point> points, std::size_t cores) {
  Sweep sweep;
  sweep.job = "cpu";
  sweep.description = "recorded";
  sweep.cores = cores;
  sweep.serial = std::move(serial);
  sweep.serial.engine = "serial";
  summarize(sweep.serial, 0);
  const Statistics serial_wall = sweep.serial.wall;
  summarize(sweep.serial, serial_wall);
  sweep.points = std::move(points);
  for (Point& p : sweep.points) summarize(p, serial_wall);
  return sweep;
}

// `crew bench cpu --below 3e6 --max-workers 4` on a loaded 2-core machine said "Use processes, 4
// workers: 1.19×" while process ×4 spread ±34.7 % and threads ×2 measured 0.75×.
TEST(SweepNoiseTest, ASpreadOfThirtyFivePercentGivesNoVerdict) {
  const Sweep sweep = summarized(
      runs_of("serial", 1, {1.00, 0.82, 1.20}, 0.95),
      {runs_of("thread", 1, {1.05, 0.98, 1.30}), runs_of("thread", 2, {1.33, 1.00, 1.70}),
       runs_of("thread", 4, {1.10, 1.25, 0.95}), runs_of("process", 1, {1.08, 1.20, 0.99}),
       runs_of("process", 2, {0.90, 1.15, 1.02}), runs_of("process", 4, {0.84, 0.5575, 1.1405})},
      2);
  const Verdict v = decide(sweep);
  EXPECT_THAT(v.sentence, Not(HasSubstr("Use processes"))) << v.sentence;
  EXPECT_THAT(v.sentence, HasSubstr("Inconclusive: within noise")) << v.sentence;
  // The figures come with it: the leader and its interval.
  EXPECT_THAT(v.sentence, HasSubstr("processes, 4 workers: 1.19× (95 % CI ")) << v.sentence;
}

// Another run said "Use threads, 1 worker: 1.27×": 127 % efficiency, which one worker cannot
// reach against a serial loop; the serial runs were slowed, consistently.
TEST(SweepNoiseTest, EfficiencyAboveOneHundredPercentIsNoiseNotAFinding) {
  const Sweep sweep = summarized(
      runs_of("serial", 1, {1.27, 1.26, 1.28}, 1.2),
      {runs_of("thread", 1, {1.00, 1.01, 0.99}), runs_of("thread", 2, {1.02, 1.00, 1.03}),
       runs_of("process", 1, {1.10, 1.11, 1.09}), runs_of("process", 2, {1.08, 1.07, 1.09})},
      2);
  const Verdict v = decide(sweep);
  EXPECT_THAT(v.sentence, Not(HasSubstr("Use threads"))) << v.sentence;
  EXPECT_THAT(v.sentence, HasSubstr("Inconclusive: thread ×1 measured 127 % efficiency"))
      << v.sentence;
}

// `crew demo` printed "process 2.63× … efficiency 132 %" on 2 workers.
TEST(SweepNoiseTest, TheDemosOneHundredThirtyTwoPercentIsNoise) {
  const Sweep sweep = summarized(
      runs_of("serial", 1, {0.263, 0.262, 0.264}, 0.147),
      {runs_of("thread", 2, {0.105, 0.104, 0.106}), runs_of("process", 2, {0.100, 0.101, 0.099})},
      2);
  const Verdict v = decide(sweep);
  EXPECT_THAT(v.sentence, Not(HasSubstr("Use "))) << v.sentence;
  EXPECT_THAT(v.sentence, HasSubstr("% efficiency, which only noise gives")) << v.sentence;
  EXPECT_THAT(v.sentence, HasSubstr("processes reach 2.63×")) << v.sentence;
  EXPECT_THAT(v.warnings, ::testing::Contains(HasSubstr("process ×2 13")));
}

// The demo's serial run showed CPU/wall 0.56 on a job that only computes: other programs had the
// CPU, so the serial baseline (and every speed-up over it) is inflated, however tight the runs.
TEST(SweepNoiseTest, ABusySerialRunOfACpuOnlyJobGivesNoVerdict) {
  Sweep sweep = summarized(
      runs_of("serial", 1, {0.263, 0.262, 0.264}, 0.147),
      {runs_of("thread", 2, {0.140, 0.141, 0.139}), runs_of("process", 2, {0.150, 0.151, 0.149})},
      2);
  sweep.cpu_bound_job = true;
  const Verdict v = decide(sweep);
  EXPECT_FALSE(v.conclusive);
  EXPECT_EQ(v.engine, "inconclusive");
  EXPECT_THAT(v.sentence,
              HasSubstr("Inconclusive: the serial run of this CPU-only job got 0.56 CPU "
                        "per wall second (busy machine)"))
      << v.sentence;
  ASSERT_FALSE(v.warnings.empty());
  EXPECT_THAT(v.warnings[0], HasSubstr("busy machine"));
}

// --repeat 1: one run per point says nothing of the spread, so nothing can be told from noise.
TEST(SweepNoiseTest, OneRunPerPointGivesNoVerdict) {
  const Sweep sweep = summarized(runs_of("serial", 1, {1.0}, 1.0),
                                 {runs_of("thread", 1, {1.0}), runs_of("thread", 2, {0.55}),
                                  runs_of("process", 1, {1.02}), runs_of("process", 2, {0.60})},
                                 2);
  const Verdict v = decide(sweep);
  EXPECT_THAT(v.sentence, Not(HasSubstr("Use threads"))) << v.sentence;
  EXPECT_THAT(v.sentence, HasSubstr("Inconclusive: one run per point, so the spread is unknown"))
      << v.sentence;
}

// The same sweep measured cleanly keeps its verdict: noise rules must not silence real results.
TEST(SweepNoiseTest, CleanFiguresStillGiveAVerdict) {
  const Sweep sweep = summarized(runs_of("serial", 1, {1.000, 1.004, 0.997, 1.002, 0.999}, 1.0),
                                 {runs_of("thread", 1, {1.010, 1.006, 1.012, 1.008, 1.011}),
                                  runs_of("thread", 2, {0.535, 0.534, 0.537, 0.536, 0.533}),
                                  runs_of("process", 1, {1.050, 1.046, 1.052, 1.049, 1.051}),
                                  runs_of("process", 2, {0.625, 0.622, 0.628, 0.626, 0.624})},
                                 2);
  const Verdict v = decide(sweep);
  EXPECT_THAT(v.sentence, HasSubstr("Use threads, 2 workers: 1.87× over serial")) << v.sentence;
  EXPECT_TRUE(v.conclusive);
  EXPECT_TRUE(v.warnings.empty()) << v.warnings.front();
}

// An IO job at its ideal: 4 workers wait 4 requests at once, so the speed-up is 4× and the point
// estimate lands a little above or below 100 % by chance. `crew bench io` said "Inconclusive:
// event-loop ×4 measured 100 % efficiency, which only noise gives" for figures like these (4.02×,
// 95 % CI 3.57–4.51): only an efficiency above 100 % beyond the spread is a sign of noise.
TEST(SweepNoiseTest, AnIdealSpeedUpWithinItsSpreadStillGivesAVerdict) {
  Sweep sweep = summarized(runs_of("serial", 1, {0.612, 0.650, 0.732, 0.630, 0.626}, 0.003),
                           {runs_of("thread", 1, {0.617, 0.643, 0.676, 0.640, 0.639}),
                            runs_of("thread", 2, {0.312, 0.321, 0.336, 0.318, 0.318}),
                            runs_of("thread", 4, {0.156, 0.166, 0.184, 0.162, 0.162}),
                            runs_of("event-loop", 4, {0.155, 0.160, 0.175, 0.160, 0.160})},
                           2);
  sweep.job = "io";
  sweep.cpu_bound_job = false;
  const Verdict v = decide(sweep);
  ASSERT_GT(sweep.points.back().efficiency, 1.0);
  EXPECT_TRUE(v.conclusive) << v.sentence;
  EXPECT_THAT(v.sentence, Not(HasSubstr("only noise gives"))) << v.sentence;
}

// The break-even table is a verdict too: "threads pay from 10 µs tasks" must not come from one
// lucky point whose spread covers serial, nor from an efficiency above 100 %.
TEST(SweepNoiseTest, BreakEvenCountsOnlySpeedUpsBeyondTheNoise) {
  const auto size = [](double cpu_us, std::vector<double> thread_walls) {
    Sweep sweep = summarized(runs_of("serial", 1, {1.00, 1.01, 0.99}, 1.0),
                             {runs_of("thread", 2, std::move(thread_walls))}, 2);
    return TaskSizeSweep{.cpu_us = cpu_us, .sweep = std::move(sweep)};
  };
  const std::vector<BreakEven> result = break_even({
      size(10, {0.45, 0.90, 1.35}),   // mean 0.90: 1.11×, but ±50 %: within noise
      size(50, {0.40, 0.41, 0.39}),   // 2.5× on 2 workers: 125 % efficiency, noise
      size(100, {0.60, 0.61, 0.59}),  // 1.67×, clean
  });
  ASSERT_EQ(result.size(), 1U);
  EXPECT_EQ(result[0].engine, "thread");
  EXPECT_EQ(result[0].cpu_us, 100.0);
}

}  // namespace
}  // namespace crew::sweep
