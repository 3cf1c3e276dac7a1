// The sweep's pure logic: worker counts, statistics, the verdict and its renderings.
#include "crew/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "sweep_prose.hpp"

namespace crew::sweep {
namespace {

using detail::engine_prose;
using detail::format_speedup;
using detail::plural;

using Json = nlohmann::ordered_json;

// The lighter engine wins a tie: an event loop costs one thread, a thread a stack, a process a
// whole address space. Unknown engines sort last, by name.
int engine_weight(std::string_view engine) {
  if (engine == "event-loop") return 0;
  if (engine == "thread") return 1;
  if (engine == "process") return 2;
  return 3;
}

// True when `a` is the cheaper point: fewer workers, then the lighter engine.
bool cheaper(const Point& a, const Point& b) {
  if (a.workers != b.workers) return a.workers < b.workers;
  const int wa = engine_weight(a.engine);
  const int wb = engine_weight(b.engine);
  if (wa != wb) return wa < wb;
  return a.engine < b.engine;
}

// The point with the highest speed-up; the cheaper one among equals. nullptr for none.
const Point* best_point(const std::vector<const Point*>& points) {
  const Point* best = nullptr;
  for (const Point* p : points) {
    if (best == nullptr || p->speedup > best->speedup ||
        (p->speedup == best->speedup && cheaper(*p, *best))) {
      best = p;
    }
  }
  return best;
}

std::string adding_prose(std::string_view engine) {
  if (engine == "thread") return "threads";
  if (engine == "process") return "processes";
  if (engine == "event-loop") return "workers to the event loop";
  return fmt::format("{} workers", engine);
}

double ratio(double num, double den) { return den > 0 ? num / den : 0; }

// The first w of `engine` that no larger worker count beats by kStopsPaying or more. Looking at
// every larger count, not only the next, keeps one noisy dip (1 → 2 slower, 4 faster) from
// calling a stop before the worker count the verdict recommends.
std::optional<std::size_t> stops_paying_at(const std::vector<Point>& points,
                                           std::string_view engine) {
  std::vector<const Point*> own;
  for (const Point& p : points) {
    if (p.engine == engine) own.push_back(&p);
  }
  std::ranges::stable_sort(own, {}, &Point::workers);
  for (std::size_t i = 0; i + 1 < own.size(); ++i) {
    double best_after = 0;
    for (std::size_t j = i + 1; j < own.size(); ++j) {
      best_after = std::max(best_after, own[j]->speedup);
    }
    if (best_after < (1 + kStopsPaying) * own[i]->speedup) return own[i]->workers;
  }
  return std::nullopt;
}

// "1.19× (95 % CI 0.80–1.77×)", or "1.19× (one run: spread unknown)".
std::string speedup_with_interval(const Point& p) {
  if (!p.speedup_interval.interval_known()) {
    return fmt::format("{} (spread unknown)", format_speedup(p.speedup));
  }
  return fmt::format("{} (95 % CI {:.2f}–{})", format_speedup(p.speedup), *p.speedup_interval.low,
                     format_speedup(*p.speedup_interval.high));
}

std::string point_prose(const Point& p) { return fmt::format("{} ×{}", p.engine, p.workers); }

// Why the figures cannot carry "use X": empty when they can. The order is the order a reader
// should fix them in: a busy machine first, as it spoils every other figure.
std::string why_inconclusive(const Sweep& sweep, const Verdict& verdict, const Point& chosen,
                             const Point* runner_up) {
  if (sweep.cpu_bound_job && verdict.cpu_per_wall > 0 &&
      verdict.cpu_per_wall < kBusySerialCpuPerWall) {
    return fmt::format(
        "the serial run of this CPU-only job got {:.2f} CPU per wall second (busy machine)",
        verdict.cpu_per_wall);
  }
  if (chosen.efficiency_beyond_noise()) {
    return fmt::format("{} measured {:.0f} % efficiency, which only noise gives",
                       point_prose(chosen), chosen.efficiency * 100);
  }
  switch (compare(chosen.wall, sweep.serial.wall)) {
    case Difference::kFaster:
      break;
    case Difference::kUnknown:
      return "one run per point, so the spread is unknown";
    case Difference::kWithinNoise:
    case Difference::kSlower:
      return fmt::format("within noise: {} is not clearly faster than serial", point_prose(chosen));
  }
  // The cheaper of two points within kGoodEnough of each other is the better buy even when the
  // dearer one is measurably faster; a dearer choice must be faster beyond the noise.
  if (runner_up == nullptr || cheaper(chosen, *runner_up)) return {};
  switch (compare(chosen.wall, runner_up->wall)) {
    case Difference::kFaster:
      return {};
    case Difference::kUnknown:
      return "one run per point, so the spread is unknown";
    case Difference::kWithinNoise:
    case Difference::kSlower:
      break;
  }
  return fmt::format("within noise: {} and {} cannot be told apart", point_prose(chosen),
                     point_prose(*runner_up));
}

// Every sign of noise in the sweep, for Verdict::warnings.
std::vector<std::string> warnings_of(const Sweep& sweep, double serial_cpu_per_wall) {
  NoiseSigns signs{.cpu_bound_job = sweep.cpu_bound_job,
                   .serial_cpu_per_wall = serial_cpu_per_wall,
                   .other_load = sweep.other_load,
                   .cores = sweep.cores,
                   .outlier_runs = sweep.serial.wall.outliers};
  bool spread_unknown = !sweep.serial.wall.spread_known();
  std::vector<std::string> noisy;
  for (const Point& p : sweep.points) {
    signs.outlier_runs += p.wall.outliers;
    spread_unknown = spread_unknown || !p.wall.spread_known();
    if (p.efficiency_is_noise()) {
      noisy.push_back(fmt::format("{} {:.0f} %", point_prose(p), p.efficiency * 100));
    }
  }
  std::vector<std::string> warnings = noise_warnings(signs);
  if (!noisy.empty()) {
    warnings.push_back(fmt::format(
        "efficiency above 100 % ({}) is noise, not a finding: w workers cannot run a serial "
        "loop's work more than w times faster: the serial runs were slowed, or the gap is within "
        "the spread",
        fmt::join(noisy, ", ")));
  }
  if (spread_unknown) {
    warnings.push_back(
        "one run per point: the spread is unknown, so no figure can be told from noise (use "
        "--repeat 3 or more, or leave --repeat out)");
  }
  return warnings;
}

Json sample_json(const Sample& s) {
  Json j;
  j["wall_s"] = s.wall_s;
  j["cpu_s"] = s.cpu_s;
  j["peak_rss_bytes"] = s.peak_rss_bytes;
  return j;
}

Json or_null(const std::optional<double>& value) { return value ? Json(*value) : Json(nullptr); }

Json point_json(const Point& p) {
  Json j;
  j["engine"] = p.engine;
  j["workers"] = p.workers;
  j["runs"] = p.wall.runs;
  j["wall_s"] = p.wall_s;
  j["wall_stddev_s"] = p.wall.spread_known() ? Json(p.wall.stddev) : Json(nullptr);
  j["wall_min_s"] = p.wall_min_s;
  j["wall_max_s"] = p.wall_max_s;
  j["wall_median_s"] = p.wall.median;
  j["outliers"] = p.wall.outliers;
  j["cpu_s"] = p.cpu_s;
  j["peak_rss_bytes"] = p.peak_rss_bytes;
  j["speedup"] = p.speedup;
  j["speedup_low"] = or_null(p.speedup_interval.low);
  j["speedup_high"] = or_null(p.speedup_interval.high);
  j["efficiency"] = p.efficiency;
  j["efficiency_is_noise"] = p.efficiency_is_noise();
  j["samples"] = Json::array();
  for (const Sample& s : p.samples) j["samples"].push_back(sample_json(s));
  return j;
}

}  // namespace

std::vector<std::size_t> worker_counts(std::size_t max_workers) {
  if (max_workers == 0) throw std::invalid_argument("max_workers must be at least 1");
  std::vector<std::size_t> counts;
  for (std::size_t w = 1;; w *= 2) {
    counts.push_back(w);
    if (w > max_workers / 2) break;  // the next doubling would pass max_workers (or overflow)
  }
  if (counts.back() != max_workers) counts.push_back(max_workers);
  return counts;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const std::size_t mid = values.size() / 2;
  std::ranges::nth_element(values, values.begin() + static_cast<std::ptrdiff_t>(mid));
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return lower + (upper - lower) / 2;
}

void summarize(Point& point, const Statistics& serial_wall) {
  if (point.samples.empty()) {
    throw std::invalid_argument(
        fmt::format("point.samples is empty ({} × {})", point.engine, point.workers));
  }
  std::vector<double> walls;
  std::vector<double> cpus;
  std::vector<std::uint64_t> rss;
  for (const Sample& s : point.samples) {
    walls.push_back(s.wall_s);
    cpus.push_back(s.cpu_s);
    rss.push_back(s.peak_rss_bytes);
  }
  point.wall = describe(walls);
  point.wall_min_s = point.wall.min;
  point.wall_max_s = point.wall.max;
  point.wall_s = point.wall.mean;
  point.cpu_s = median(cpus);
  // Bytes stay integers: a double's median of two RSS figures could land on half a byte.
  std::ranges::sort(rss);
  const std::size_t mid = rss.size() / 2;
  point.peak_rss_bytes =
      rss.size() % 2 == 1 ? rss[mid] : rss[mid - 1] + (rss[mid] - rss[mid - 1]) / 2;
  point.speedup_interval = speedup(serial_wall, point.wall);
  point.speedup = point.speedup_interval.value;
  point.efficiency = point.workers > 0 ? point.speedup / static_cast<double>(point.workers) : 0;
}

void summarize(Point& point, double serial_wall_s) {
  Statistics serial;
  serial.runs = 1;
  serial.mean = serial.min = serial.max = serial.median = serial_wall_s;
  summarize(point, serial);
}

Verdict decide(const Sweep& sweep) {
  Verdict verdict;
  verdict.cpu_per_wall = ratio(sweep.serial.cpu_s, sweep.serial.wall_s);
  verdict.cpu_bound = verdict.cpu_per_wall >= kCpuBoundThreshold;

  std::vector<const Point*> all;
  for (const Point& p : sweep.points) {
    if (p.engine != "serial") all.push_back(&p);
  }
  const Point* best = best_point(all);
  verdict.warnings = warnings_of(sweep, verdict.cpu_per_wall);

  std::string sentence;
  if (sweep.interrupted) sentence += "From the points measured before the interruption: ";
  sentence += fmt::format("{} (CPU/wall {:.2f}). ", verdict.cpu_bound ? "CPU-bound" : "IO-bound",
                          verdict.cpu_per_wall);
  const int worth_it_percent = static_cast<int>(std::lround((kWorthIt - 1) * 100));

  if (best == nullptr || best->speedup < kWorthIt) {
    if (best == nullptr) {
      sentence += "Stay serial: no engine was measured.";
    } else {
      sentence +=
          fmt::format("Stay serial: no engine beats the loop by {} % (best: {}, {} with {}).",
                      worth_it_percent, engine_prose(best->engine), format_speedup(best->speedup),
                      plural(best->workers, "worker", "workers"));
      // The comparison still helps a reader: what the best engine got, at what memory.
      verdict.runner_up = best->engine;
      verdict.runner_up_speedup = best->speedup;
      verdict.runner_up_memory_ratio = ratio(static_cast<double>(best->peak_rss_bytes),
                                             static_cast<double>(sweep.serial.peak_rss_bytes));
    }
    verdict.sentence = std::move(sentence);
    return verdict;
  }

  // Within kGoodEnough of the best is as good as the best: then fewer workers and a lighter
  // engine are what a person would rather run.
  const Point* chosen = nullptr;
  for (const Point* p : all) {
    if (p->speedup >= (1 - kGoodEnough) * best->speedup &&
        (chosen == nullptr || cheaper(*p, *chosen))) {
      chosen = p;
    }
  }
  verdict.engine = chosen->engine;
  verdict.workers = chosen->workers;
  verdict.speedup = chosen->speedup;
  verdict.stops_paying_at = stops_paying_at(sweep.points, chosen->engine);

  std::vector<const Point*> others;
  for (const Point* p : all) {
    if (p->engine != chosen->engine) others.push_back(p);
  }
  const Point* runner_up = best_point(others);
  if (runner_up != nullptr) {
    verdict.runner_up = runner_up->engine;
    verdict.runner_up_speedup = runner_up->speedup;
    verdict.runner_up_memory_ratio = ratio(static_cast<double>(runner_up->peak_rss_bytes),
                                           static_cast<double>(chosen->peak_rss_bytes));
  }

  const std::string doubt = why_inconclusive(sweep, verdict, *chosen, runner_up);
  if (!doubt.empty()) {
    verdict.conclusive = false;
    verdict.engine = "inconclusive";
    sentence +=
        fmt::format("Inconclusive: {}. Leading: {}, {}: {}", doubt, engine_prose(chosen->engine),
                    plural(chosen->workers, "worker", "workers"), speedup_with_interval(*chosen));
    if (runner_up != nullptr) {
      sentence += fmt::format("; {} reach{} {}", engine_prose(runner_up->engine),
                              runner_up->engine == "event-loop" ? "es" : "",
                              speedup_with_interval(*runner_up));
    }
    sentence += ". Rerun on a quiet machine, or with more runs (--min-runs, --target-rse).";
    verdict.sentence = std::move(sentence);
    return verdict;
  }

  sentence +=
      fmt::format("Use {}, {}: {} over serial", engine_prose(chosen->engine),
                  plural(chosen->workers, "worker", "workers"), format_speedup(chosen->speedup));
  // For a CPU-bound job the cores are the ceiling, so the reader needs them beside the figure.
  if (verdict.cpu_bound) sentence += fmt::format(" ({})", plural(sweep.cores, "core", "cores"));
  if (runner_up != nullptr) {
    sentence += fmt::format("; {} reach{} {}", engine_prose(runner_up->engine),
                            runner_up->engine == "event-loop" ? "es" : "",
                            format_speedup(runner_up->speedup));
    if (verdict.runner_up_memory_ratio > 0) {
      sentence += fmt::format(" with {:.1f}× the memory", verdict.runner_up_memory_ratio);
    }
  }
  sentence += ".";
  if (verdict.stops_paying_at) {
    sentence += fmt::format(" Adding {} stops paying after {}.", adding_prose(chosen->engine),
                            *verdict.stops_paying_at);
  } else {
    std::size_t most = 0;
    for (const Point* p : all) {
      if (p->engine == chosen->engine) most = std::max(most, p->workers);
    }
    sentence += fmt::format(" Adding {} still paid at {}, the most measured.",
                            adding_prose(chosen->engine), most);
  }
  verdict.sentence = std::move(sentence);
  return verdict;
}

std::vector<BreakEven> break_even(const std::vector<TaskSizeSweep>& sweeps) {
  std::vector<BreakEven> result;
  const auto entry_for = [&result](const std::string& engine) -> BreakEven& {
    for (BreakEven& b : result) {
      if (b.engine == engine) return b;
    }
    return result.emplace_back(BreakEven{.engine = engine, .cpu_us = std::nullopt});
  };
  for (const TaskSizeSweep& size : sweeps) {
    // An engine beats serial at this size when any of its worker counts does, beyond the noise
    // (Welch's t-test) and within what its workers can do (efficiency at most 100 %).
    for (const Point& p : size.sweep.points) {
      if (p.engine == "serial") continue;
      BreakEven& entry = entry_for(p.engine);
      const bool beats_serial = p.speedup >= kWorthIt && !p.efficiency_is_noise() &&
                                compare(p.wall, size.sweep.serial.wall) == Difference::kFaster;
      if (beats_serial && (!entry.cpu_us || size.cpu_us < *entry.cpu_us)) {
        entry.cpu_us = size.cpu_us;
      }
    }
  }
  return result;
}

std::string to_json(const Sweep& sweep, const Verdict& verdict) {
  Json j;
  j["job"] = sweep.job;
  j["description"] = sweep.description;
  j["cores"] = sweep.cores;
  j["repeat"] = sweep.repeat > 0 ? Json(sweep.repeat) : Json(nullptr);
  j["runs"] = {
      {"warmup", sweep.policy.warmup},
      {"min_runs", sweep.policy.min_runs},
      {"max_runs", sweep.policy.max_runs},
      {"target_rse", sweep.policy.exact() ? Json(nullptr) : Json(sweep.policy.target_rse)},
      {"max_time_s", sweep.policy.exact() ? Json(nullptr) : Json(sweep.policy.max_time.count())}};
  j["interrupted"] = sweep.interrupted;
  j["other_load"] = sweep.other_load;
  j["serial"] = point_json(sweep.serial);
  j["points"] = Json::array();
  for (const Point& p : sweep.points) j["points"].push_back(point_json(p));
  j["python"] = Json::array();
  for (const PythonComparison& py : sweep.python) {
    Json row;
    row["what"] = py.what;
    row["workers"] = py.workers;
    row["wall_s"] = py.wall_s;
    row["crew_engine"] = py.crew_engine;
    row["crew_workers"] = py.crew_workers;
    row["crew_wall_s"] = py.crew_wall_s;
    row["crew_speedup"] = py.crew_speedup();
    j["python"].push_back(std::move(row));
  }
  Json v;
  v["conclusive"] = verdict.conclusive;
  v["cpu_bound"] = verdict.cpu_bound;
  v["cpu_per_wall"] = verdict.cpu_per_wall;
  v["engine"] = verdict.engine;
  v["workers"] = verdict.workers;
  v["speedup"] = verdict.speedup;
  v["stops_paying_at"] = verdict.stops_paying_at ? Json(*verdict.stops_paying_at) : Json(nullptr);
  v["runner_up"] = verdict.runner_up ? Json(*verdict.runner_up) : Json(nullptr);
  v["runner_up_speedup"] = verdict.runner_up_speedup;
  v["runner_up_memory_ratio"] = verdict.runner_up_memory_ratio;
  v["sentence"] = verdict.sentence;
  v["warnings"] = verdict.warnings;
  j["verdict"] = std::move(v);
  // A description typed by a user may hold bytes that are not UTF-8; replace them, do not throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string to_csv(const Sweep& sweep) {
  // The new columns go last, so that a reader of the first ten keeps working.
  std::string out =
      "job,engine,workers,wall_s,wall_min_s,wall_max_s,cpu_s,peak_rss_bytes,speedup,efficiency,"
      "runs,wall_stddev_s,wall_median_s,speedup_low,speedup_high\n";
  const auto known = [](const std::optional<double>& value, int decimals) {
    return value ? fmt::format("{:.{}f}", *value, decimals) : std::string();
  };
  const auto row = [&](const Point& p) {
    out += fmt::format(
        "{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{},{:.4f},{:.4f},{},{},{:.6f},{},{}\n", sweep.job,
        p.engine, p.workers, p.wall_s, p.wall_min_s, p.wall_max_s, p.cpu_s, p.peak_rss_bytes,
        p.speedup, p.efficiency, p.wall.runs,
        known(p.wall.spread_known() ? std::optional(p.wall.stddev) : std::nullopt, 6),
        p.wall.median, known(p.speedup_interval.low, 4), known(p.speedup_interval.high, 4));
  };
  row(sweep.serial);
  for (const Point& p : sweep.points) row(p);
  return out;
}

}  // namespace crew::sweep
