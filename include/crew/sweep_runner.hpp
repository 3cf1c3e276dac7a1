// Runs a sweep: serial and every engine × worker count, each point warmed up and then repeated as
// a RunPolicy says (an exact count, or until the relative standard error of its mean is small or
// its time budget ends), in rounds so that a drift of the machine's speed spreads over all points.
// The caller supplies one run of one point (a Sampler); this file decides how many and in what
// order, and measures what other programs did to the machine meanwhile.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "crew/sweep.hpp"
#include "crew/sweep_statistics.hpp"

namespace crew::sweep {

// One run of `engine` with `workers`: its Sample, or nullopt when a stop request cut it short.
// May throw; the exception leaves run_sweep.
using Sampler =
    std::function<std::optional<Sample>(const std::string& engine, std::size_t workers)>;

// Called after each run (warm-ups included) with the runs done and the runs now expected in all.
using RunProgress = std::function<void(std::size_t done, std::size_t expected)>;

struct SweepSpec {
  std::string job;
  std::string description;
  std::size_t cores = 1;
  std::vector<std::string> engines;  // besides serial, which is always measured first
  std::vector<std::size_t> workers;  // the worker counts of each engine
  RunPolicy policy;
  bool cpu_bound_job = false;  // see Sweep::cpu_bound_job
};

// Measures the sweep and summarizes it against serial. Stops early when `stop` is requested or a
// sample returns nullopt (Sweep::interrupted; the points keep the runs that finished, points with
// none are dropped). Blocks: for every run. Throws: whatever `sample` throws;
// std::invalid_argument when policy.min_runs is 0 or above max_runs. Thread safety: calls `sample`
// and `progress` on the calling thread only; sweeps on several threads at once share nothing but
// the machine (and each other's load in other_load).
[[nodiscard]] Sweep run_sweep(const SweepSpec& spec, const Sampler& sample, std::stop_token stop,
                              const RunProgress& progress = {});

// The most seconds a point whose run takes `run_seconds` can cost under `policy` (warm-ups
// included): for the --yes check before a sweep.
[[nodiscard]] double worst_case_seconds(const RunPolicy& policy, double run_seconds) noexcept;

// CPU seconds the whole machine spent busy since boot (every core, from /proc/stat), or nullopt
// where /proc/stat cannot be read. Blocks: on one read of /proc/stat. Throws: nothing. Thread
// safety: safe.
[[nodiscard]] std::optional<double> machine_busy_seconds() noexcept;

}  // namespace crew::sweep
