// One run of `crew bench`'s jobs on one engine and worker count, measured (wall, CPU of every
// thread and reaped worker process, peak RSS summed over the engine's processes): the samplers
// crew::sweep::run_sweep repeats.
#pragma once

#include <crew/sweep_runner.hpp>
#include <crew/workloads/fetch.hpp>

#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace crew::cli {

// The synthetic task: burn cpu_ns of this thread's CPU, then sleep io_ns.
struct SyntheticTask {
  std::int64_t cpu_ns;
  std::int64_t io_ns;
};

// The primes sum below `below`. The first run's sum goes into `answer` (which must outlive the
// sampler); a later run that disagrees throws std::runtime_error ("wrong answer"). nullopt when
// `stop` cut the run short.
[[nodiscard]] sweep::Sampler primes_sampler(std::int64_t below, std::stop_token stop,
                                            std::optional<std::int64_t>& answer);

// Fetches `urls` (which must outlive the sampler). Throws: std::runtime_error naming a URL that
// failed.
[[nodiscard]] sweep::Sampler fetch_sampler(const std::vector<std::string>& urls,
                                           std::stop_token stop);

// Runs `tasks` (which must outlive the sampler). Throws: std::runtime_error when a task did not
// run.
[[nodiscard]] sweep::Sampler synthetic_sampler(const std::vector<SyntheticTask>& tasks,
                                               std::stop_token stop);

}  // namespace crew::cli
