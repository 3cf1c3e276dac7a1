// The *when* of crew: a sweep of engines × worker counts over one job, measured against serial in
// the same run, and the verdict a person can act on ("IO-bound; use threads, 32 workers").
//
// This header holds what does not measure anything, so that it can be tested on recorded figures:
// the worker counts to try, the statistics of repeated runs, speed-up and efficiency, the verdict
// rules, the break-even task size, and the JSON, CSV and gnuplot renderings. `crew bench` (cli/)
// runs the jobs and fills these types in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crew/sweep_statistics.hpp"

namespace crew::sweep {

// 1, 2, 4, … doubling up to max_workers, with max_workers itself last when it is not a power of
// two (1, 2, 4, 6 for 6). Throws: std::invalid_argument naming "max_workers" when it is 0.
[[nodiscard]] std::vector<std::size_t> worker_counts(std::size_t max_workers);

// One run of one point.
struct Sample {
  double wall_s = 0;
  double cpu_s = 0;                  // user + sys of every thread and process of the engine
  std::uint64_t peak_rss_bytes = 0;  // summed over the engine's processes (host + workers)
};

// The counted runs of one point (warm-ups are not samples), summarized: mean ± σ, min … max.
struct Point {
  std::string engine;  // "serial", "thread", "process", "event-loop"
  std::size_t workers = 1;
  std::vector<Sample> samples;  // in the order run
  Statistics wall;              // of samples' wall_s
  double wall_s = 0;            // mean (wall.mean)
  double wall_min_s = 0;
  double wall_max_s = 0;
  double cpu_s = 0;                  // median
  std::uint64_t peak_rss_bytes = 0;  // median
  double speedup = 0;                // serial's mean wall / this mean wall
  Ratio speedup_interval;            // speedup with its 95 % interval (unknown for one run)
  double efficiency = 0;             // speedup / workers
  // Above kMaxEfficiency: noise (the baseline was slowed, or chance), never a finding; the table
  // marks it.
  [[nodiscard]] bool efficiency_is_noise() const noexcept {
    return engine != "serial" && efficiency > kMaxEfficiency;
  }
  // Above kMaxEfficiency beyond the spread: the whole 95 % interval of the speed-up passes
  // workers × kMaxEfficiency (with the spread unknown, the speed-up itself). Only this says the
  // baseline was slowed: a job at its ideal (an IO job's 4× on 4 workers) lands a little above
  // 100 % half the time by chance, and that must not silence its verdict.
  [[nodiscard]] bool efficiency_beyond_noise() const noexcept {
    if (engine == "serial") return false;
    const double limit = kMaxEfficiency * static_cast<double>(workers);
    return speedup_interval.low ? *speedup_interval.low > limit : efficiency > kMaxEfficiency;
  }
};

// The median of `values` (the mean of the middle two for an even count); 0 for none.
[[nodiscard]] double median(std::vector<double> values);

// Fills wall, wall_s, wall_min_s, wall_max_s, cpu_s and peak_rss_bytes from point.samples, and
// speedup, speedup_interval and efficiency against the serial point's wall statistics (speed-up 0
// when either mean is 0). Throws: std::invalid_argument when point.samples is empty.
void summarize(Point& point, const Statistics& serial_wall);
// As above against a serial wall known from one run (its spread unknown).
void summarize(Point& point, double serial_wall_s);

// The article's own Python on the same job in the same run (crew bench --compare-python).
struct PythonComparison {
  std::string what;  // "Python for loop", "ThreadPoolExecutor(2)", "multiprocessing.Pool(2)"
  std::size_t workers = 1;
  double wall_s = 0;
  std::string crew_engine;  // the crew point it is compared with: same engine kind and workers
  std::size_t crew_workers = 1;
  double crew_wall_s = 0;
  // How many times faster crew was: wall_s / crew_wall_s (0 when crew_wall_s is 0).
  [[nodiscard]] double crew_speedup() const noexcept {
    return crew_wall_s > 0 ? wall_s / crew_wall_s : 0;
  }
};

// A whole sweep of one job on one machine.
struct Sweep {
  std::string job;             // "cpu", "io" or "synthetic"
  std::string description;     // "primes below 1,000,000", "256 URLs × 20 ms × 5 KiB", …
  std::size_t cores = 1;       // the CPUs this process may use (default_worker_count)
  std::size_t repeat = 1;      // --repeat N (an exact count of runs per point), or 0: adaptive
  RunPolicy policy;            // how many runs each point got
  bool cpu_bound_job = false;  // the job uses only the CPU (its serial CPU/wall should be ≈ 1)
  double other_load = 0;       // CPUs other programs kept busy during the sweep; 0 when unknown
  Point serial;                // engine "serial", workers 1
  std::vector<Point> points;   // every other engine × worker count, in the order run
  bool interrupted = false;    // Ctrl-C: the points are those finished before it
  std::vector<PythonComparison> python;  // empty unless --compare-python
};

// CPU/wall of the serial run: above this the job is CPU-bound, below it IO-bound.
inline constexpr double kCpuBoundThreshold = 0.5;
// Points within this fraction of the best speed-up count as equally good; the verdict then takes
// the cheapest of them (fewest workers, then the lighter engine: event-loop, thread, process).
inline constexpr double kGoodEnough = 0.05;
// Adding workers "stops paying" at w when doubling w gains less than this fraction.
inline constexpr double kStopsPaying = 0.10;
// A speed-up below this is no reason to leave the serial loop.
inline constexpr double kWorthIt = 1.10;

struct Verdict {
  // false when the figures cannot tell the leader from serial or from the runner-up (Welch's
  // t-test at 95 %), when its efficiency is above 100 %, or when the serial run of a CPU-only job
  // shared its CPU: engine is then "inconclusive" and the sentence gives the figures.
  bool conclusive = true;
  bool cpu_bound = true;
  double cpu_per_wall = 0;  // of the serial run
  // The recommendation: "serial" when no engine reaches kWorthIt.
  std::string engine = "serial";
  std::size_t workers = 1;
  double speedup = 1;
  // For the recommended engine: the smallest worker count after which doubling gains less than
  // kStopsPaying (nullopt when every doubling measured still paid).
  std::optional<std::size_t> stops_paying_at;
  // The best other engine, for comparison: its best speed-up and its peak memory relative to the
  // recommendation's (nullopt when there is none).
  std::optional<std::string> runner_up;
  double runner_up_speedup = 0;
  double runner_up_memory_ratio = 0;
  // One sentence, e.g. "IO-bound (CPU/wall 0.02). Use threads, 32 workers: 29.7× over serial;
  // processes reach 27.1× with 3.8× the memory. Adding threads stops paying after 32."
  std::string sentence;
  // Signs that the figures are noisy (a busy machine, outliers, efficiency above 100 %, one run
  // per point), one sentence each, for a reader to see before the verdict.
  std::vector<std::string> warnings;
};

// The verdict rules, applied to a summarized sweep. Throws: nothing but std::bad_alloc.
[[nodiscard]] Verdict decide(const Sweep& sweep);

// For the synthetic job: sweeps at several task sizes (µs of CPU per task).
struct TaskSizeSweep {
  double cpu_us = 0;
  Sweep sweep;
};

// The smallest task size at which each engine beats serial (a worker count with a speed-up
// ≥ kWorthIt, faster than serial by Welch's t-test at 95 %, efficiency at most 100 %), per engine
// in first-seen order; nullopt for an engine that never does (or whose runs had no spread).
struct BreakEven {
  std::string engine;
  std::optional<double> cpu_us;
};
[[nodiscard]] std::vector<BreakEven> break_even(const std::vector<TaskSizeSweep>& sweeps);

// The sweep as one JSON document (one line): job, description, cores, repeat, runs (the policy),
// interrupted, other_load, serial and points (each with engine, workers, runs, wall_s (mean),
// wall_stddev_s, wall_min_s, wall_max_s, wall_median_s, outliers, cpu_s, peak_rss_bytes, speedup,
// speedup_low, speedup_high, efficiency, efficiency_is_noise, samples), python (what, workers,
// wall_s, crew_engine, crew_workers, crew_wall_s, crew_speedup) and verdict (with conclusive and
// warnings). Unknown figures (σ of one run) are null. docs/cli.md lists the fields.
[[nodiscard]] std::string to_json(const Sweep& sweep, const Verdict& verdict);

// The points as CSV with a header line:
//   job,engine,workers,wall_s,wall_min_s,wall_max_s,cpu_s,peak_rss_bytes,speedup,efficiency,
//   runs,wall_stddev_s,wall_median_s,speedup_low,speedup_high
// (one line), serial first; wall_s is the mean; an unknown figure is an empty field. Fields never
// need quoting (engine names and numbers only).
[[nodiscard]] std::string to_csv(const Sweep& sweep);

// A gnuplot script that draws speed-up against workers, one curve per engine with the 95 %
// interval of each point as an error bar (none where the spread is unknown), the ideal line
// (speed-up = workers, up to `cores` for a CPU-bound job), and a vertical marker at `cores`, into
// `png_path` (pngcairo, or png where cairo is missing: the script tries both). The data come
// inline, so the script is self-contained.
[[nodiscard]] std::string gnuplot_script(const Sweep& sweep, const Verdict& verdict,
                                         std::string_view png_path);

}  // namespace crew::sweep
