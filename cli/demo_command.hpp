// `crew demo`: the article's CPU job run three times, on the serial loop, a ThreadPool and a
// ProcessPool, with the %%time blocks, the speed-ups, and why it differs from the article's
// Python. `make demo` runs it.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "interrupt.hpp"

namespace crew::cli {

struct DemoArgs {
  std::string below = "1000000";
};

// The known sum of the primes below n, for the n the project has checked (10, 100, 1e6, 1e7), or
// nullopt.
[[nodiscard]] std::optional<std::int64_t> known_prime_sum(std::int64_t below);

// Registers `crew demo` on `app`, writing what it parses into `args` (which must outlive app).
CLI::App* add_demo_command(CLI::App& app, DemoArgs& args);

// Runs `crew demo`; returns the exit code: 0, 1 when the engines disagree or miss the known
// answer, 128 + signal when interrupted. Throws: UsageError; whatever run_primes throws.
[[nodiscard]] int run_demo_command(const DemoArgs& args, const InterruptWatcher& interrupt);

}  // namespace crew::cli
