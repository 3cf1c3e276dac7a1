// The sweep's pure logic on recorded (hand-made) measurements: worker counts, statistics, the
// verdict rules, break-even, and the JSON, CSV and gnuplot renderings. Nothing here is timed.
#include "crew/sweep.hpp"

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "support/leak_guard.hpp"

namespace crew::sweep {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// Five runs of a quiet machine: ±0.5 % around `wall_s`, whose mean they keep.
std::vector<Sample> quiet_runs(double wall_s, double cpu_s, std::uint64_t rss_bytes) {
  std::vector<Sample> samples;
  for (const double factor : {0.995, 1.0, 1.005, 0.998, 1.002}) {
    samples.push_back({.wall_s = wall_s * factor, .cpu_s = cpu_s, .peak_rss_bytes = rss_bytes});
  }
  return samples;
}

// A point measured five times on a quiet machine, summarized against `serial_wall_s`: its mean
// speed-up is what is asked for.
Point measured(std::string engine, std::size_t workers, double speedup, double serial_wall_s,
               std::uint64_t rss_bytes, double cpu_s = 0) {
  Point p;
  p.engine = std::move(engine);
  p.workers = workers;
  p.samples = quiet_runs(serial_wall_s / speedup, cpu_s, rss_bytes);
  summarize(p, serial_wall_s);
  return p;
}

Sweep with_serial(std::string job, double wall_s, double cpu_s, std::uint64_t rss_bytes,
                  std::size_t cores) {
  Sweep sweep;
  sweep.job = std::move(job);
  sweep.description = "recorded";
  sweep.cores = cores;
  sweep.serial.engine = "serial";
  sweep.serial.samples = quiet_runs(wall_s, cpu_s, rss_bytes);
  summarize(sweep.serial, wall_s);
  return sweep;
}

// Like `crew bench cpu` on this 2-core VM: two workers is all the machine has.
Sweep cpu_bound_sweep() {
  Sweep sweep = with_serial("cpu", 1.0, 1.0, 10 * kMiB, 2);
  sweep.description = "primes below 1,000,000";
  sweep.repeat = 1;
  const double w = sweep.serial.wall_s;
  for (auto [workers, speedup] : {std::pair{1, 0.99}, {2, 1.87}, {4, 1.85}, {8, 1.86}}) {
    sweep.points.push_back(measured("thread", workers, speedup, w, 12 * kMiB, 1.0));
  }
  sweep.points.push_back(measured("process", 1, 0.95, w, 14 * kMiB, 1.0));
  sweep.points.push_back(
      measured("process", 2, 1.60, w, static_cast<std::uint64_t>(25.2 * kMiB), 1.0));
  sweep.points.push_back(measured("process", 4, 1.58, w, 46 * kMiB, 1.0));
  sweep.points.push_back(measured("process", 8, 1.55, w, 88 * kMiB, 1.0));
  return sweep;
}

// Like `crew bench io`: 256 URLs of 10 ms each; threads scale to 32 and then go flat.
Sweep io_bound_sweep() {
  Sweep sweep = with_serial("io", 2.56, 0.0512, 20 * kMiB, 2);
  sweep.description = "256 URLs × 10 ms × 5 KiB";
  const double w = sweep.serial.wall_s;
  const std::vector<std::pair<int, double>> threads = {{1, 1.0},   {2, 1.98},   {4, 3.9},
                                                       {8, 7.8},   {16, 15.2},  {32, 29.7},
                                                       {64, 30.1}, {128, 29.9}, {256, 29.5}};
  for (auto [workers, speedup] : threads) {
    sweep.points.push_back(measured("thread", workers, speedup, w, 30 * kMiB));
  }
  for (auto [workers, speedup] : std::vector<std::pair<int, double>>{
           {1, 0.97}, {2, 1.9}, {4, 3.7}, {8, 7.2}, {16, 14.1}, {32, 27.1}, {64, 26.0}}) {
    sweep.points.push_back(
        measured("process", workers, speedup, w, workers == 32 ? 114 * kMiB : 60 * kMiB));
  }
  return sweep;
}

// --- worker_counts --------------------------------------------------------------------------

TEST(SweepTest, WorkerCountsDoubleUpToTheMaximum) {
  using V = std::vector<std::size_t>;
  EXPECT_EQ(worker_counts(1), V({1}));
  EXPECT_EQ(worker_counts(2), V({1, 2}));
  EXPECT_EQ(worker_counts(6), V({1, 2, 4, 6}));
  EXPECT_EQ(worker_counts(8), V({1, 2, 4, 8}));
  EXPECT_EQ(worker_counts(256), V({1, 2, 4, 8, 16, 32, 64, 128, 256}));
  const std::vector<std::size_t> huge = worker_counts(SIZE_MAX);
  EXPECT_EQ(huge.back(), SIZE_MAX) << "no overflow past the largest power of two";
}

TEST(SweepTest, WorkerCountsRejectZero) {
  try {
    (void)worker_counts(0);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string_view(e.what()).find("max_workers"), std::string_view::npos) << e.what();
  }
}

// --- median and summarize -------------------------------------------------------------------

TEST(SweepTest, MedianOfOddEvenAndNone) {
  EXPECT_DOUBLE_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(median({7.5}), 7.5);
  EXPECT_DOUBLE_EQ(median({}), 0.0);
}

TEST(SweepTest, SummarizeTakesMeansSpreadSpeedupAndEfficiency) {
  Point p;
  p.engine = "thread";
  p.workers = 4;
  p.samples = {{.wall_s = 0.30, .cpu_s = 1.1, .peak_rss_bytes = 300},
               {.wall_s = 0.25, .cpu_s = 1.0, .peak_rss_bytes = 100},
               {.wall_s = 0.50, .cpu_s = 1.3, .peak_rss_bytes = 200}};
  summarize(p, 1.0);
  EXPECT_NEAR(p.wall_s, 0.35, 1e-12) << "the mean, as hyperfine's headline";
  EXPECT_EQ(p.wall.runs, 3u);
  EXPECT_NEAR(p.wall.median, 0.30, 1e-12);
  EXPECT_NEAR(p.wall.stddev, std::sqrt((0.05 * 0.05 + 0.1 * 0.1 + 0.15 * 0.15) / 2), 1e-12);
  EXPECT_DOUBLE_EQ(p.wall_min_s, 0.25);
  EXPECT_DOUBLE_EQ(p.wall_max_s, 0.50);
  EXPECT_DOUBLE_EQ(p.cpu_s, 1.1);
  EXPECT_EQ(p.peak_rss_bytes, 200u);
  EXPECT_NEAR(p.speedup, 1.0 / 0.35, 1e-12);
  EXPECT_NEAR(p.efficiency, 1.0 / 0.35 / 4, 1e-12);
  EXPECT_FALSE(p.speedup_interval.interval_known()) << "serial's spread is unknown (one wall)";

  p.samples.push_back({.wall_s = 0.40, .cpu_s = 1.2, .peak_rss_bytes = 401});
  summarize(p, 1.0);
  EXPECT_NEAR(p.wall_s, 0.3625, 1e-12);
  EXPECT_NEAR(p.wall.median, 0.35, 1e-12) << "even count: mean of the middle two";
  EXPECT_EQ(p.peak_rss_bytes, 250u) << "whole bytes: (200 + 300) / 2";
}

TEST(SweepTest, SummarizeGuardsZeroWalls) {
  Point p;
  p.workers = 2;
  p.samples = {{.wall_s = 0.5}};
  summarize(p, 0);
  EXPECT_EQ(p.speedup, 0);
  EXPECT_EQ(p.efficiency, 0);
  p.samples = {{.wall_s = 0}};
  summarize(p, 1.0);
  EXPECT_EQ(p.speedup, 0);
  EXPECT_EQ(p.efficiency, 0);
}

TEST(SweepTest, SummarizeRejectsAPointWithoutSamples) {
  Point p;
  EXPECT_THROW(summarize(p, 1.0), std::invalid_argument);
}

// --- decide ---------------------------------------------------------------------------------

TEST(SweepTest, CpuBoundJobUsesThreadsUpToTheCores) {
  const Verdict v = decide(cpu_bound_sweep());
  EXPECT_TRUE(v.cpu_bound);
  EXPECT_NEAR(v.cpu_per_wall, 1.0, 1e-12);
  EXPECT_EQ(v.engine, "thread");
  EXPECT_EQ(v.workers, 2u);
  EXPECT_NEAR(v.speedup, 1.87, 1e-9);
  EXPECT_EQ(v.stops_paying_at, 2u);
  EXPECT_EQ(v.runner_up, "process");
  EXPECT_NEAR(v.runner_up_speedup, 1.60, 1e-9);
  EXPECT_NEAR(v.runner_up_memory_ratio, 2.1, 1e-6);
  EXPECT_EQ(v.sentence,
            "CPU-bound (CPU/wall 1.00). Use threads, 2 workers: 1.87× over serial (2 cores); "
            "processes reach 1.60× with 2.1× the memory. Adding threads stops paying after 2.");
}

TEST(SweepTest, IoBoundJobUsesThreadsWhereTheyStopScaling) {
  const Verdict v = decide(io_bound_sweep());
  EXPECT_FALSE(v.cpu_bound);
  EXPECT_NEAR(v.cpu_per_wall, 0.02, 1e-12);
  EXPECT_EQ(v.engine, "thread");
  EXPECT_EQ(v.workers, 32u) << "64 is 1 % faster: within kGoodEnough, so the cheaper 32";
  EXPECT_EQ(v.stops_paying_at, 32u);
  EXPECT_EQ(v.runner_up, "process");
  EXPECT_EQ(v.sentence,
            "IO-bound (CPU/wall 0.02). Use threads, 32 workers: 29.7× over serial; processes "
            "reach 27.1× with 3.8× the memory. Adding threads stops paying after 32.");
}

TEST(SweepTest, EventLoopWinsATieOnTheSameWorkers) {
  Sweep sweep = io_bound_sweep();
  const double w = sweep.serial.wall_s;
  for (auto [workers, speedup] :
       std::vector<std::pair<int, double>>{{8, 7.7}, {16, 15.0}, {32, 29.0}, {64, 29.3}}) {
    sweep.points.push_back(measured("event-loop", workers, speedup, w, 22 * kMiB));
  }
  const Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "event-loop") << "29.0 is within 5 % of threads' best 30.1";
  EXPECT_EQ(v.workers, 32u);
  EXPECT_EQ(v.stops_paying_at, 32u);
  EXPECT_EQ(v.runner_up, "thread");
  EXPECT_NEAR(v.runner_up_speedup, 30.1, 1e-9);
  EXPECT_NEAR(v.runner_up_memory_ratio, 30.0 / 22.0, 1e-9);
  EXPECT_EQ(v.sentence,
            "IO-bound (CPU/wall 0.02). Use the event loop, 32 workers: 29.0× over serial; threads "
            "reach 30.1× with 1.4× the memory. Adding workers to the event loop stops paying "
            "after 32.");
}

TEST(SweepTest, FewerWorkersWinWithinFivePercent) {
  Sweep sweep = io_bound_sweep();
  // 28.7 ≥ 0.95 × 30.1: as good as the best, on fewer workers than threads' 32.
  sweep.points.push_back(measured("process", 30, 28.7, sweep.serial.wall_s, 60 * kMiB));
  const Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "process") << v.sentence;
  EXPECT_EQ(v.workers, 30u);
}

TEST(SweepTest, TiesGoToFewestWorkersThenTheLighterEngine) {
  Sweep sweep = with_serial("synthetic", 1.0, 1.0, kMiB, 8);
  const double w = sweep.serial.wall_s;
  sweep.points = {measured("process", 4, 3.0, w, kMiB), measured("thread", 8, 3.0, w, kMiB),
                  measured("thread", 4, 3.0, w, kMiB)};
  Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "thread");
  EXPECT_EQ(v.workers, 4u);

  sweep.points.push_back(measured("event-loop", 4, 3.0, w, kMiB));
  v = decide(sweep);
  EXPECT_EQ(v.engine, "event-loop");
  EXPECT_EQ(v.workers, 4u);

  sweep.points.push_back(measured("process", 3, 2.9, w, kMiB));
  v = decide(sweep);
  EXPECT_EQ(v.engine, "process") << "2.9 is within 5 % of 3.0, on fewer workers";
  EXPECT_EQ(v.workers, 3u);
}

TEST(SweepTest, ANoisyDipDoesNotStopThePayingBeforeALargerCountWins) {
  // 1 → 2 got slower (a noisy machine), 4 is the best: adding workers paid up to 4.
  Sweep sweep = with_serial("cpu", 1.0, 1.0, kMiB, 4);
  const double w = sweep.serial.wall_s;
  sweep.points = {measured("thread", 1, 0.95, w, kMiB), measured("thread", 2, 0.60, w, kMiB),
                  measured("thread", 4, 1.50, w, kMiB), measured("thread", 8, 1.52, w, kMiB)};
  const Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "thread");
  EXPECT_EQ(v.workers, 4u);
  EXPECT_EQ(v.stops_paying_at, 4u);
}

TEST(SweepTest, StaysSerialWhenNothingBeatsTheLoopByTenPercent) {
  Sweep sweep = with_serial("cpu", 1.0, 0.99, 10 * kMiB, 2);
  const double w = sweep.serial.wall_s;
  sweep.points = {measured("thread", 1, 0.98, w, 11 * kMiB),
                  measured("thread", 2, 1.04, w, 12 * kMiB),
                  measured("process", 2, 0.90, w, 25 * kMiB)};
  const Verdict v = decide(sweep);
  EXPECT_TRUE(v.cpu_bound);
  EXPECT_EQ(v.engine, "serial");
  EXPECT_EQ(v.workers, 1u);
  EXPECT_EQ(v.speedup, 1);
  EXPECT_EQ(v.stops_paying_at, std::nullopt);
  EXPECT_EQ(v.sentence,
            "CPU-bound (CPU/wall 0.99). Stay serial: no engine beats the loop by 10 % (best: "
            "threads, 1.04× with 2 workers).");
}

TEST(SweepTest, StaysSerialWhenNoEngineWasMeasured) {
  Sweep sweep = with_serial("cpu", 1.0, 1.0, kMiB, 2);
  sweep.interrupted = true;
  const Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "serial");
  EXPECT_EQ(v.runner_up, std::nullopt);
  EXPECT_EQ(v.sentence,
            "From the points measured before the interruption: CPU-bound (CPU/wall 1.00). Stay "
            "serial: no engine was measured.");
}

TEST(SweepTest, InterruptedSweepSaysSoAndThatDoublingStillPaid) {
  Sweep sweep = io_bound_sweep();
  // Ctrl-C after threads reached 16 workers: nothing measured beyond.
  std::erase_if(sweep.points,
                [](const Point& p) { return p.engine != "thread" || p.workers > 16; });
  sweep.interrupted = true;
  const Verdict v = decide(sweep);
  EXPECT_EQ(v.engine, "thread");
  EXPECT_EQ(v.workers, 16u);
  EXPECT_EQ(v.stops_paying_at, std::nullopt);
  EXPECT_EQ(v.runner_up, std::nullopt);
  EXPECT_EQ(v.sentence,
            "From the points measured before the interruption: IO-bound (CPU/wall 0.02). Use "
            "threads, 16 workers: 15.2× over serial. Adding threads still paid at 16, the most "
            "measured.");
}

// --- break_even -----------------------------------------------------------------------------

TEST(SweepTest, BreakEvenIsTheSmallestTaskEachEngineWinsAt) {
  const auto at = [](double cpu_us, double thread_best, double process_best) {
    Sweep sweep = with_serial("synthetic", 1.0, 1.0, kMiB, 2);
    sweep.points = {
        measured("thread", 1, 0.9, 1.0, kMiB), measured("thread", 2, thread_best, 1.0, kMiB),
        measured("process", 2, process_best, 1.0, kMiB), measured("event-loop", 2, 0.5, 1.0, kMiB)};
    return TaskSizeSweep{.cpu_us = cpu_us, .sweep = std::move(sweep)};
  };
  // Given largest first, to show the order of the sizes does not matter.
  const std::vector<BreakEven> result =
      break_even({at(1000, 1.9, 1.6), at(100, 1.5, 0.95), at(10, 1.05, 0.3)});
  ASSERT_EQ(result.size(), 3u);
  EXPECT_EQ(result[0].engine, "thread");
  EXPECT_EQ(result[0].cpu_us, 100.0);
  EXPECT_EQ(result[1].engine, "process");
  EXPECT_EQ(result[1].cpu_us, 1000.0);
  EXPECT_EQ(result[2].engine, "event-loop");
  EXPECT_EQ(result[2].cpu_us, std::nullopt);
  EXPECT_TRUE(break_even({}).empty());
}

// --- to_json --------------------------------------------------------------------------------

TEST(SweepTest, JsonHoldsTheDocumentedFieldsInOrder) {
  Sweep sweep = cpu_bound_sweep();
  sweep.repeat = 3;
  sweep.python = {{.what = "ThreadPoolExecutor(2)",
                   .workers = 2,
                   .wall_s = 2.0,
                   .crew_engine = "thread",
                   .crew_workers = 2,
                   .crew_wall_s = 0.5}};
  const Verdict verdict = decide(sweep);
  const std::string text = to_json(sweep, verdict);
  EXPECT_EQ(text.find('\n'), std::string::npos) << "one line";

  const auto doc = nlohmann::ordered_json::parse(text);
  std::vector<std::string> keys;
  for (const auto& [key, value] : doc.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"job", "description", "cores", "repeat", "runs",
                                            "interrupted", "other_load", "serial", "points",
                                            "python", "verdict"}));
  EXPECT_EQ(doc["job"], "cpu");
  EXPECT_EQ(doc["description"], "primes below 1,000,000");
  EXPECT_EQ(doc["cores"], 2);
  EXPECT_EQ(doc["repeat"], 3);
  EXPECT_EQ(doc["interrupted"], false);

  std::vector<std::string> point_keys;
  for (const auto& [key, value] : doc["serial"].items()) point_keys.push_back(key);
  EXPECT_EQ(point_keys,
            (std::vector<std::string>{
                "engine", "workers", "runs", "wall_s", "wall_stddev_s", "wall_min_s", "wall_max_s",
                "wall_median_s", "outliers", "cpu_s", "peak_rss_bytes", "speedup", "speedup_low",
                "speedup_high", "efficiency", "efficiency_is_noise", "samples"}));
  EXPECT_EQ(doc["serial"]["engine"], "serial");
  EXPECT_EQ(doc["serial"]["speedup"], 1.0);
  ASSERT_EQ(doc["points"].size(), sweep.points.size());
  const auto& thread2 = doc["points"][1];
  EXPECT_EQ(thread2["engine"], "thread");
  EXPECT_EQ(thread2["workers"], 2);
  EXPECT_NEAR(thread2["speedup"].get<double>(), 1.87, 1e-9);
  EXPECT_NEAR(thread2["efficiency"].get<double>(), 0.935, 1e-9);
  EXPECT_EQ(thread2["peak_rss_bytes"], 12 * kMiB);
  EXPECT_EQ(thread2["runs"], 5);
  EXPECT_GT(thread2["wall_stddev_s"].get<double>(), 0.0);
  EXPECT_TRUE(thread2["speedup_low"].is_null()) << "serial's spread: one wall, unknown";
  EXPECT_EQ(thread2["efficiency_is_noise"], false);
  ASSERT_EQ(thread2["samples"].size(), 5u);
  EXPECT_EQ(thread2["samples"][0]["peak_rss_bytes"], 12 * kMiB);

  ASSERT_EQ(doc["python"].size(), 1u);
  const auto& py = doc["python"][0];
  std::vector<std::string> python_keys;
  for (const auto& [key, value] : py.items()) python_keys.push_back(key);
  EXPECT_EQ(python_keys, (std::vector<std::string>{"what", "workers", "wall_s", "crew_engine",
                                                   "crew_workers", "crew_wall_s", "crew_speedup"}));
  EXPECT_EQ(py["what"], "ThreadPoolExecutor(2)");
  EXPECT_DOUBLE_EQ(py["crew_speedup"].get<double>(), 4.0);

  const auto& v = doc["verdict"];
  std::vector<std::string> verdict_keys;
  for (const auto& [key, value] : v.items()) verdict_keys.push_back(key);
  EXPECT_EQ(verdict_keys, (std::vector<std::string>{
                              "conclusive", "cpu_bound", "cpu_per_wall", "engine", "workers",
                              "speedup", "stops_paying_at", "runner_up", "runner_up_speedup",
                              "runner_up_memory_ratio", "sentence", "warnings"}));
  EXPECT_EQ(v["conclusive"], true);
  EXPECT_EQ(v["warnings"], nlohmann::ordered_json::array());
  EXPECT_EQ(v["cpu_bound"], true);
  EXPECT_EQ(v["engine"], "thread");
  EXPECT_EQ(v["workers"], 2);
  EXPECT_EQ(v["stops_paying_at"], 2);
  EXPECT_EQ(v["runner_up"], "process");
  EXPECT_EQ(v["sentence"], verdict.sentence);
}

TEST(SweepTest, JsonWritesNullWhenNothingStoppedPayingOrRanSecond) {
  Sweep sweep = io_bound_sweep();
  std::erase_if(sweep.points,
                [](const Point& p) { return p.engine != "thread" || p.workers > 16; });
  const Verdict verdict = decide(sweep);
  const auto doc = nlohmann::json::parse(to_json(sweep, verdict));
  EXPECT_TRUE(doc["verdict"]["stops_paying_at"].is_null());
  EXPECT_TRUE(doc["verdict"]["runner_up"].is_null());
  EXPECT_TRUE(doc["python"].is_array());
  EXPECT_TRUE(doc["python"].empty());
}

TEST(SweepTest, JsonReplacesBytesThatAreNotUtf8) {
  Sweep sweep = cpu_bound_sweep();
  sweep.description = "bad \xff byte";
  std::string text;
  ASSERT_NO_THROW(text = to_json(sweep, decide(sweep)));
  const auto doc = nlohmann::json::parse(text);
  EXPECT_EQ(doc["description"], "bad \xEF\xBF\xBD byte") << "U+FFFD in place of the byte";
}

// --- to_csv ---------------------------------------------------------------------------------

TEST(SweepTest, CsvHasAHeaderSerialFirstAndOneRowPerPoint) {
  const Sweep sweep = cpu_bound_sweep();
  const std::string csv = to_csv(sweep);
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 1 + 1 + sweep.points.size());
  EXPECT_EQ(lines[0],
            "job,engine,workers,wall_s,wall_min_s,wall_max_s,cpu_s,peak_rss_bytes,speedup,"
            "efficiency,runs,wall_stddev_s,wall_median_s,speedup_low,speedup_high");
  EXPECT_TRUE(lines[1].starts_with("cpu,serial,1,")) << lines[1];

  // The thread point at 2 workers, field by field.
  std::vector<std::string> fields;
  std::istringstream row(lines[3]);
  for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
  // getline drops the last, empty field: speedup_high is unknown, as speedup_low.
  ASSERT_EQ(fields.size(), 14u) << lines[3];
  EXPECT_EQ(fields[0], "cpu");
  EXPECT_EQ(fields[1], "thread");
  EXPECT_EQ(fields[2], "2");
  EXPECT_NEAR(std::stod(fields[3]), 1.0 / 1.87, 1e-6);
  EXPECT_NEAR(std::stod(fields[6]), 1.0, 1e-6);
  EXPECT_EQ(std::stoull(fields[7]), 12 * kMiB);
  EXPECT_NEAR(std::stod(fields[8]), 1.87, 1e-4);
  EXPECT_NEAR(std::stod(fields[9]), 0.935, 1e-4);
  EXPECT_EQ(fields[10], "5");
  EXPECT_GT(std::stod(fields[11]), 0.0);
  EXPECT_EQ(fields[13], "") << "speedup_low unknown: serial's spread is";
}

// --- gnuplot_script -------------------------------------------------------------------------

Sweep plotted_sweep() {
  Sweep sweep = io_bound_sweep();
  const double w = sweep.serial.wall_s;
  sweep.points.push_back(measured("event-loop", 32, 29.0, w, 22 * kMiB));
  sweep.points.push_back(measured("event-loop", 64, 29.3, w, 22 * kMiB));
  return sweep;
}

TEST(SweepTest, GnuplotScriptIsSelfContained) {
  const Sweep sweep = plotted_sweep();
  const std::string script = gnuplot_script(sweep, decide(sweep), "/tmp/it's/io.png");
  const auto has = [&script](std::string_view text) {
    return script.find(text) != std::string::npos;
  };
  EXPECT_TRUE(has("set output '/tmp/it''s/io.png'\n")) << script;
  EXPECT_TRUE(has("set terminal pngcairo size 900,600"));
  EXPECT_TRUE(has("set terminal png size 900,600"));
  EXPECT_TRUE(has("strstrt(GPVAL_TERMINALS, \"pngcairo\")"));
  EXPECT_TRUE(has("$thread << EOD\n1 1.000000 1.000000 1.000000\n2 1.980000 1.980000 1.980000\n"));
  EXPECT_TRUE(has("$process << EOD\n"));
  EXPECT_TRUE(
      has("$event_loop << EOD\n32 29.000000 29.000000 29.000000\n64 29.300000 "
          "29.300000 29.300000\nEOD\n"));
  EXPECT_TRUE(has("$thread using 1:2:3:4 with yerrorlines")) << "error bars";
  EXPECT_TRUE(has("$ideal << EOD\n"));
  EXPECT_TRUE(has("set arrow from 2, graph 0 to 2, graph 1 nohead dt 2\n"));
  EXPECT_TRUE(has("\"2 cores\""));
  EXPECT_TRUE(has("set logscale x 2"));
  EXPECT_TRUE(has("set key top left"));
  EXPECT_TRUE(has("256 URLs × 10 ms × 5 KiB")) << "the title names the job";
  EXPECT_TRUE(has("verdict: event loop, 32 workers"));
}

TEST(SweepTest, GnuplotIdealIsCappedAtTheCoresForACpuBoundJob) {
  const Sweep sweep = cpu_bound_sweep();
  const std::string script = gnuplot_script(sweep, decide(sweep), "cpu.png");
  EXPECT_NE(script.find("$ideal << EOD\n1 1\n2 2\n4 2\n8 2\nEOD\n"), std::string::npos) << script;
}

TEST(SweepTest, GnuplotQuotesATitleWithQuotes) {
  Sweep sweep = cpu_bound_sweep();
  sweep.description = "say \"hi\" \\ bye";
  const std::string script = gnuplot_script(sweep, decide(sweep), "cpu.png");
  EXPECT_NE(script.find("say \\\"hi\\\" \\\\ bye"), std::string::npos) << script;
}

// Where gnuplot is on PATH; empty when it is not.
std::filesystem::path find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / "gnuplot";
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// A scratch directory, removed however the test ends.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(std::filesystem::path p) : path(std::move(p)) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;  // a destructor must not throw; a leftover temp dir is harmless
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

TEST(SweepTest, GnuplotDrawsThePng) {
  const std::filesystem::path gnuplot = find_gnuplot();
  if (gnuplot.empty()) GTEST_SKIP() << "gnuplot is not installed";

  // A quote in the directory name checks the escaping against gnuplot itself.
  const TempDir dir(std::filesystem::temp_directory_path() /
                    fmt::format("crew-sweep-test-{}-it's", ::getpid()));
  const std::filesystem::path png = dir.path / "io.png";
  const std::filesystem::path script_path = dir.path / "io.gp";
  const Sweep sweep = plotted_sweep();
  std::ofstream(script_path) << gnuplot_script(sweep, decide(sweep), png.string());

  // posix_spawn, not std::system: no shell to trip over the quote in the path.
  std::string arg0 = gnuplot.string();
  std::string arg1 = script_path.string();
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, gnuplot.c_str(), nullptr, nullptr, argv, environ), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  std::ifstream in(png, std::ios::binary);
  std::string head(8, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  EXPECT_EQ(head, std::string("\x89PNG\r\n\x1a\n", 8)) << "no PNG at " << png;
}

}  // namespace
}  // namespace crew::sweep
