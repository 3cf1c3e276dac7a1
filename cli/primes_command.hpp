// `crew primes`: the article's CPU-bound job (the sum of is_prime(i) for i below N) on one engine,
// timed like %%time. Also the engine runner that `crew demo` reuses.
#pragma once

#include <CLI/CLI.hpp>
#include <crew/process_stats.hpp>
#include <crew/timing.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>

#include "interrupt.hpp"
#include "progress_bar.hpp"

namespace crew::cli {

// A command line that parsed but makes no sense ("--workers 0"): main prints it as one line and
// exits 2, like CLI11's own parse errors.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Engine { kSerial, kThread, kProcess };

[[nodiscard]] std::string_view engine_name(Engine engine);

// A validated primes job.
struct PrimesJob {
  std::int64_t below = 1'000'000;
  Engine engine = Engine::kThread;
  std::size_t workers = 1;
  // Why this many workers: default_worker_count()'s reason, "--workers" when the user chose, or
  // what the serial engine does instead.
  std::string workers_reason;
  // Thread and process engines. Unset: crew's automatic chunk size.
  std::optional<std::size_t> chunksize;
  // Process engine only: ProcessPoolOptions::task_timeout and max_tasks_per_child. Unset: none.
  std::optional<std::chrono::milliseconds> task_timeout;
  std::optional<std::size_t> max_tasks_per_child;
};

// The chunk size a pool engine's imap uses for `job`: --chunksize, else what crew picks — 1 while a
// process pool has a task timeout (ProcessPoolOptions::task_timeout), else
// crew::detail::auto_chunksize. 0 for the serial engine (no chunks).
[[nodiscard]] std::size_t effective_chunksize(const PrimesJob& job);

// How many chunks `job` splits its numbers into: 0 for the serial engine.
[[nodiscard]] std::size_t chunk_count(const PrimesJob& job);

// What a run produced. The numbers checked are always a prefix [0, checked) of the input (imap
// yields in input order), so even an interrupted run has an exact partial sum.
struct PrimesResult {
  std::int64_t checked = 0;  // == job.below unless interrupted
  std::int64_t sum = 0;      // the sum of the primes below `checked`
  bool interrupted = false;
  Timing timing;  // the whole run: pool start and shutdown included
  // Pool engines: the chunks whose results are in `sum` (a prefix of the chunks, like `checked`),
  // and the chunk count of the whole job.
  std::size_t chunks_done = 0;
  std::size_t chunks_total = 0;
  // Process engine: what the pool measured, taken after its workers exited and were reaped.
  std::optional<ProcessPoolStats> process_stats;
};

// Runs the job on its engine, reporting progress to `progress`. When `stop` fires, the serial
// engine stops within 65,536 numbers, the thread engine once its chunks in flight have settled,
// and the process engine at once (the workers running chunks are killed); the result then says
// interrupted. Blocks: for the run, the process pool's shutdown included. Throws:
// std::system_error when threads or processes cannot be started; crew's errors other than a stop's
// crew::Cancelled (crew::TaskTimeout when a chunk outlives --task-timeout). Thread safety: safe.
[[nodiscard]] PrimesResult run_primes(const PrimesJob& job, std::stop_token stop,
                                      ProgressBar& progress);

// "engine: thread, workers: 2 (2 CPUs in …), chunksize: auto" — one line, no newline. The process
// engine adds its task timeout and tasks per child when set.
[[nodiscard]] std::string describe_job(const PrimesJob& job);

// 37550402023 → "37,550,402,023". Thread safety: safe.
[[nodiscard]] std::string group_digits(std::int64_t value);

// The command line of `crew primes`, as typed (validated by resolve_primes_args).
struct PrimesArgs {
  std::string below = "1000000";
  std::string engine = "thread";
  std::string workers;  // empty: default_worker_count()
  std::string chunksize = "auto";
  std::string task_timeout;         // empty: none
  std::string max_tasks_per_child;  // empty: none
  bool json = false;
};

// A whole number for option `option` in [min, max], as crew::workloads::parse_count_in_range
// reads it (1000, 1_000, 1e3). Throws: UsageError with its message.
[[nodiscard]] std::int64_t parse_whole_option(std::string_view text, std::int64_t min,
                                              std::int64_t max, std::string_view option);

// Parses `text` as --below does (0 … 1e10, digits or 1e7). Throws: UsageError.
[[nodiscard]] std::int64_t parse_below(std::string_view text);

// Registers `crew primes` on `app`, writing what it parses into `args` (which must outlive app).
CLI::App* add_primes_command(CLI::App& app, PrimesArgs& args);

// Validates the arguments into a job. Throws: UsageError naming the option.
[[nodiscard]] PrimesJob resolve_primes_args(const PrimesArgs& args);

// Runs `crew primes`; returns the exit code (0, or 128 + signal when interrupted).
// Throws: UsageError; whatever run_primes throws.
[[nodiscard]] int run_primes_command(const PrimesArgs& args, const InterruptWatcher& interrupt);

}  // namespace crew::cli
