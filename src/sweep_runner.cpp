// The sweep's measuring loop: warm-ups, rounds of runs until each point's RunPolicy is met, and
// the load other programs put on the machine meanwhile.
#include "crew/sweep_runner.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace crew::sweep {
namespace {

// User + system CPU seconds of this process and its reaped children (the process pool's workers
// are reaped inside each run).
double own_cpu_seconds() {
  const auto seconds = [](const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
  };
  rusage self{};
  rusage children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  return seconds(self) + seconds(children);
}

std::vector<double> walls_of(const Point& p) {
  std::vector<double> walls;
  walls.reserve(p.samples.size());
  for (const Sample& s : p.samples) walls.push_back(s.wall_s);
  return walls;
}

// Runs still expected of a point: what min_runs needs, or one more while it wants one.
std::size_t runs_left(const RunPolicy& policy, const Point& p) {
  const std::size_t n = p.samples.size();
  if (n < policy.min_runs) return policy.min_runs - n;
  return wants_another_run(policy, walls_of(p)) ? 1 : 0;
}

}  // namespace

std::optional<double> machine_busy_seconds() noexcept {
  try {
    std::ifstream stat("/proc/stat");
    std::string line;
    if (!std::getline(stat, line) || !line.starts_with("cpu ")) return std::nullopt;
    std::istringstream fields(line.substr(4));
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    unsigned long long value = 0;
    unsigned long long busy = 0;
    for (int i = 0; i < 8 && fields >> value; ++i) {
      if (i != 3 && i != 4) busy += value;
    }
    const long ticks = ::sysconf(_SC_CLK_TCK);
    if (ticks <= 0) return std::nullopt;
    return static_cast<double>(busy) / static_cast<double>(ticks);
  } catch (...) {
    // An unreadable /proc only means the load of other programs stays unknown.
    return std::nullopt;
  }
}

double worst_case_seconds(const RunPolicy& policy, double run_seconds) noexcept {
  if (run_seconds <= 0) return 0;
  double runs = static_cast<double>(policy.max_runs);
  if (!policy.exact()) {
    const double within_budget = std::ceil(policy.max_time.count() / run_seconds);
    runs = std::clamp(within_budget, static_cast<double>(policy.min_runs), runs);
  }
  return (runs + static_cast<double>(policy.warmup)) * run_seconds;
}

Sweep run_sweep(const SweepSpec& spec, const Sampler& sample, std::stop_token stop,
                const RunProgress& progress) {
  const RunPolicy& policy = spec.policy;
  if (policy.min_runs == 0 || policy.min_runs > policy.max_runs) {
    throw std::invalid_argument("policy.min_runs must be in 1 … policy.max_runs");
  }
  Sweep result;
  result.job = spec.job;
  result.description = spec.description;
  result.cores = spec.cores;
  result.policy = policy;
  result.repeat = policy.exact() ? policy.max_runs : 0;
  result.cpu_bound_job = spec.cpu_bound_job;
  result.serial.engine = "serial";
  for (const std::string& engine : spec.engines) {
    for (const std::size_t w : spec.workers) {
      Point point;
      point.engine = engine;
      point.workers = w;
      result.points.push_back(std::move(point));
    }
  }
  std::vector<Point*> all = {&result.serial};
  for (Point& p : result.points) all.push_back(&p);

  std::size_t done = 0;
  std::size_t warmups_left = policy.warmup * all.size();
  const auto report = [&] {
    if (!progress) return;
    std::size_t expected = done + warmups_left;
    for (const Point* p : all) expected += runs_left(policy, *p);
    progress(done, expected);
  };
  const auto run_one = [&](const Point& p) -> std::optional<Sample> {
    if (stop.stop_requested()) return std::nullopt;
    std::optional<Sample> s = sample(p.engine, p.workers);
    ++done;
    return s;
  };

  const auto wall_start = std::chrono::steady_clock::now();
  const std::optional<double> busy_start = machine_busy_seconds();
  const double own_start = own_cpu_seconds();
  bool interrupted = false;
  // Warm-ups first, in rounds as the counted runs: a first fork, cold caches and page faults
  // land there and are thrown away.
  for (std::size_t round = 0; round < policy.warmup && !interrupted; ++round) {
    for (Point* p : all) {
      if (!run_one(*p)) {
        interrupted = true;
        break;
      }
      --warmups_left;
      report();
    }
  }
  while (!interrupted) {
    bool any = false;
    for (Point* p : all) {
      if (runs_left(policy, *p) == 0) continue;
      any = true;
      std::optional<Sample> s = run_one(*p);
      if (!s) {
        interrupted = true;
        break;
      }
      p->samples.push_back(*s);
      report();
    }
    if (!any) break;
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const std::optional<double> busy_end = machine_busy_seconds();
  if (busy_start && busy_end && wall > 0) {
    const double others = *busy_end - *busy_start - (own_cpu_seconds() - own_start);
    result.other_load = std::max(0.0, others / wall);
  }

  result.interrupted = interrupted;
  std::erase_if(result.points, [](const Point& p) { return p.samples.empty(); });
  if (!result.serial.samples.empty()) {
    summarize(result.serial, 0);
    const Statistics serial_wall = result.serial.wall;
    summarize(result.serial, serial_wall);
    for (Point& point : result.points) summarize(point, serial_wall);
  }
  return result;
}

}  // namespace crew::sweep
