// `crew bench`: the *when*. Runs one job (the primes sum, fetching URLs, or synthetic tasks of a
// given CPU and IO cost) on every engine across doubling worker counts, against serial measured
// in the same run, then prints the table, optionally JSON, CSV and a gnuplot PNG, and a verdict:
// which engine and how many workers this job should use on this machine, and why.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "interrupt.hpp"

namespace crew::cli {

// The command line of `crew bench`, as typed (validated when it runs).
struct BenchArgs {
  std::string job;  // cpu, io, synthetic
  // cpu
  std::string below = "1000000";
  // io
  std::string urls = "128";
  std::string latency = "20ms";
  std::string body = "5KiB";
  // synthetic
  std::string cpu_us = "10,100,1000";
  std::string io_us = "0";
  std::string tasks = "2000";
  // all jobs
  std::string engines;      // empty: every engine that applies
  std::string max_workers;  // empty: 4 × cores (CPU jobs) or 256 (IO jobs)
  // How many runs each point gets (empty: the default of sweep::RunPolicy).
  std::string warmup = "1";
  std::string min_runs;
  std::string max_runs;
  std::string target_rse;  // percent
  std::string max_time;
  std::string repeat;  // an exact count; excludes the four above
  bool json = false;
  bool csv = false;
  std::string plot;  // a PNG path, or empty
  bool compare_python = false;
  bool yes = false;
};

// Registers `crew bench` on `app`, writing what it parses into `args` (which must outlive app).
CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);

// Runs `crew bench`; returns the exit code: 0, 1 when a run failed (a wrong answer, a URL that
// failed) or gnuplot (--plot) or python3 (--compare-python) is missing — checked before the first
// run —, 2 for bad usage or a sweep that could take over 10 minutes without --yes, 128 + signal
// when interrupted (the points measured so far are printed first).
// Throws: UsageError; std::system_error when threads or processes cannot be started.
[[nodiscard]] int run_bench_command(const BenchArgs& args, const InterruptWatcher& interrupt);

}  // namespace crew::cli
