#include "primes_command.hpp"

#include <fmt/format.h>
#include <crew/detail/map_run.hpp>
#include <crew/duration.hpp>
#include <crew/errors.hpp>
#include <crew/process_pool.hpp>
#include <crew/thread_pool.hpp>
#include <crew/version.hpp>
#include <crew/worker_count.hpp>
#include <crew/workloads/primes.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ranges>
#include <system_error>
#include <utility>

#include "json_output.hpp"
#include "standard_streams.hpp"

namespace crew::cli {
namespace {

using crew::workloads::is_prime;
using crew::workloads::kMaxPrimesBelow;

// The serial engine looks at the stop token and the progress bar once per this many numbers: often
// enough to stop within milliseconds, rarely enough to cost nothing next to is_prime.
constexpr std::int64_t kSerialStride = 1 << 16;

PrimesResult run_serial(std::int64_t below, std::stop_token stop, ProgressBar& progress) {
  PrimesResult result;
  const auto total = static_cast<std::size_t>(below);
  for (std::int64_t start = 0; start < below; start += kSerialStride) {
    if (stop.stop_requested()) {
      result.interrupted = true;
      return result;
    }
    const std::int64_t end = std::min(below, start + kSerialStride);
    std::int64_t sum = 0;
    for (std::int64_t i = start; i < end; ++i) sum += is_prime(i);
    result.sum += sum;
    result.checked = end;
    progress.update(static_cast<std::size_t>(end), total);
  }
  return result;
}

// The article's Pool().map, made lazy: imap keeps a bounded window of chunks in flight, so memory
// stays flat even for N = 1e10 (map would hold N results). Adds to `result` what was summed.
template <class Pool>
void sum_with_imap(Pool& pool, const PrimesJob& job, std::stop_token stop, ProgressBar& progress,
                   PrimesResult& result) {
  const MapOptions options{
      .chunksize = job.chunksize,
      .on_progress = [&progress](std::size_t done,
                                 std::size_t total) { progress.update(done, total); },
      .stop = stop,
  };
  try {
    for (std::int64_t r :
         pool.imap(is_prime, std::views::iota(std::int64_t{0}, job.below), options)) {
      result.sum += r;
      ++result.checked;
    }
  } catch (const Cancelled&) {
    // Cancelled is also how a map reports other stops; only ours is an interruption.
    if (!stop.stop_requested()) throw;
    result.interrupted = true;
  }
}

PrimesResult run_thread(const PrimesJob& job, std::stop_token stop, ProgressBar& progress) {
  PrimesResult result;
  ThreadPool pool({.workers = job.workers});
  sum_with_imap(pool, job, stop, progress, result);
  return result;
}

// imap yields whole chunks in input order, so the numbers checked are exactly the first
// `checked / chunksize` chunks (rounded up: the last chunk may be short).
void count_chunks(const PrimesJob& job, PrimesResult& result) {
  result.chunks_total = chunk_count(job);
  const auto size = static_cast<std::size_t>(result.checked);
  const std::size_t chunksize = effective_chunksize(job);
  result.chunks_done = chunksize == 0 ? 0 : (size + chunksize - 1) / chunksize;
}

PrimesResult run_process(const PrimesJob& job, std::stop_token stop, ProgressBar& progress) {
  PrimesResult result;
  ProcessPoolOptions pool_options{
      .workers = job.workers,
      .max_tasks_per_child = job.max_tasks_per_child,
      .task_timeout = job.task_timeout,
      // The pool is made after main started the InterruptWatcher, so this process runs a second
      // thread when it forks. That thread only sits in sigwait (and, on a second signal, write and
      // _exit): it holds no lock, no stdio buffer and no allocator state a worker could need, so
      // the fork-with-threads warning would only be noise here.
      .warn_if_threads_running = false,
  };
  // The article's Pool().map, with processes as the article ran it. When `stop` fires, imap cancels
  // the queued chunks and kills the workers running ours (they are replaced), then throws
  // crew::Cancelled: a Ctrl-C never waits for a long chunk.
  ProcessPool pool(std::move(pool_options));
  sum_with_imap(pool, job, stop, progress, result);
  // Reaped here, inside run_primes's Stopwatch, so the workers' CPU lands in the Timing's
  // children_* figures; the stats then hold every worker's exit and final rusage.
  (void)pool.shutdown();
  result.process_stats = pool.stats();
  return result;
}

// "--workers" text → a worker count within what the engine's pool accepts.
std::size_t parse_workers(std::string_view text, Engine engine) {
  const std::size_t max =
      engine == Engine::kProcess ? ProcessPool::kMaxWorkers : ThreadPool::kMaxWorkers;
  return static_cast<std::size_t>(
      parse_whole_option(text, 1, static_cast<std::int64_t>(max), "--workers"));
}

// The process engine copies every chunk's numbers into its request and every result into its
// reply (crew::ProcessPool has no notion of a range), with 4 chunks per worker in flight: 2^20
// numbers keep that at 16 MiB per chunk, where 1e9 would be 16 GB.
constexpr std::size_t kMaxProcessChunksize = std::size_t{1} << 20;

// Longer timeouts are refused: a chunk's deadline is the timeout times its numbers, and a day per
// number is already far beyond any run.
constexpr std::chrono::milliseconds kMaxTaskTimeout = std::chrono::hours(24);

// "--task-timeout" text: a whole number of milliseconds, or a number with a unit ("500ms", "2s",
// "1.5s"). Must be > 0 and at most a day.
std::chrono::milliseconds parse_task_timeout(std::string_view text) {
  const ParsedDuration parsed = parse_milliseconds(text);
  switch (parsed.error) {
    case DurationError::kNone:
      break;
    case DurationError::kSyntax:
      throw UsageError(fmt::format(
          "--task-timeout must be a duration such as 500ms, 2s or 1.5s (a bare number means "
          "milliseconds), got \"{}\"",
          text));
    case DurationError::kFinerThanMillisecond:
      throw UsageError(
          fmt::format("--task-timeout must be a whole number of milliseconds, got \"{}\"", text));
    case DurationError::kTooLarge:
      throw UsageError(fmt::format("--task-timeout must be at most 86400s (a day), got {}", text));
  }
  if (parsed.milliseconds <= 0) {
    throw UsageError(fmt::format("--task-timeout must be more than 0 ms, got {}", text));
  }
  if (parsed.milliseconds > kMaxTaskTimeout.count()) {
    throw UsageError(fmt::format("--task-timeout must be at most 86400s (a day), got {}", text));
  }
  return std::chrono::milliseconds(parsed.milliseconds);
}

std::size_t parse_max_tasks_per_child(std::string_view text) {
  std::int64_t value = 0;
  try {
    value = crew::workloads::parse_count(text);
  } catch (const std::invalid_argument&) {
    throw UsageError(fmt::format(
        "--max-tasks-per-child must be a whole number such as 10 or 1e3, got \"{}\"", text));
  }
  if (value < 1) {
    throw UsageError(fmt::format("--max-tasks-per-child must be at least 1, got {}", text));
  }
  return static_cast<std::size_t>(value);
}

std::optional<std::size_t> parse_chunksize(std::string_view text) {
  if (text == "auto") return std::nullopt;
  std::int64_t value = 0;
  try {
    value = crew::workloads::parse_count(text);
  } catch (const std::invalid_argument&) {
    throw UsageError(fmt::format(
        "--chunksize must be auto or a whole number such as 1000 or 1e4, got \"{}\"", text));
  }
  if (value < 1) {
    throw UsageError(fmt::format("--chunksize must be at least 1 (or auto), got {}", text));
  }
  // No chunk can hold more numbers than the largest input; clamping keeps the value meaningful
  // without refusing "1e15", which means "one chunk".
  return static_cast<std::size_t>(std::min(value, kMaxPrimesBelow));
}

Engine parse_engine(std::string_view text) {
  if (text == "serial") return Engine::kSerial;
  if (text == "thread") return Engine::kThread;
  if (text == "process") return Engine::kProcess;
  throw UsageError(fmt::format("--engine must be serial, thread or process, got \"{}\"", text));
}

nlohmann::ordered_json chunksize_json(const PrimesJob& job) {
  if (job.engine == Engine::kSerial) return nullptr;
  if (job.chunksize) return *job.chunksize;
  return "auto";
}

void print_json(const PrimesJob& job, const PrimesResult& result) {
  nlohmann::ordered_json document = {
      {"command", "primes"},
      {"crew_version", CREW_VERSION_STRING},
      {"below", job.below},
      {"answer",
       result.interrupted ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(result.sum)},
      {"engine", engine_name(job.engine)},
      {"workers", job.workers},
      {"workers_reason", job.workers_reason},
      {"chunksize", chunksize_json(job)},
      {"timing", timing_to_json(result.timing)},
      {"interrupted", result.interrupted},
      {"numbers_checked", result.checked},
      {"partial_sum", result.sum},
  };
  if (job.engine == Engine::kProcess) {
    document["task_timeout_ms"] = job.task_timeout
                                      ? nlohmann::ordered_json(job.task_timeout->count())
                                      : nlohmann::ordered_json(nullptr);
    document["max_tasks_per_child"] = job.max_tasks_per_child
                                          ? nlohmann::ordered_json(*job.max_tasks_per_child)
                                          : nlohmann::ordered_json(nullptr);
    document["chunks_total"] = result.chunks_total;
    document["chunks_done"] = result.chunks_done;
    if (result.process_stats) {
      document["process_stats"] = process_stats_to_json(*result.process_stats);
    }
  }
  write_stdout(json_line(document));
}

// The interruption notice, without a newline. The process engine counts chunks (what it
// dispatches, and kills on a stop) as well as numbers:
//   interrupted: 37 of 128 chunks done (289,081 of 1,000,000 numbers checked; sum of the …)
//   interrupted: 289,081 of 1,000,000 numbers checked (sum of the primes below 289,081 = …)
std::string interruption_line(const PrimesJob& job, const PrimesResult& result, bool with_sum) {
  const std::string numbers = fmt::format("{} of {} numbers checked", group_digits(result.checked),
                                          group_digits(job.below));
  const std::string sum = fmt::format("sum of the primes below {} = {}",
                                      group_digits(result.checked), group_digits(result.sum));
  if (job.engine == Engine::kProcess) {
    return fmt::format("interrupted: {} of {} chunks done ({}{})",
                       group_digits(static_cast<std::int64_t>(result.chunks_done)),
                       group_digits(static_cast<std::int64_t>(result.chunks_total)), numbers,
                       with_sum ? "; " + sum : std::string());
  }
  return with_sum ? fmt::format("interrupted: {} ({})", numbers, sum)
                  : fmt::format("interrupted: {}", numbers);
}

// "processes: 2 workers started, 0 replaced (0 crashed, 0 timed out); 128 chunks, 1.98 s of
// worker CPU" — one line, no newline.
std::string describe_processes(const ProcessPoolStats& stats) {
  std::chrono::nanoseconds cpu{};
  for (const WorkerRecord& worker : stats.workers) cpu += worker.cpu;
  return fmt::format(
      "processes: {} worker{} started, {} replaced ({} crashed, {} timed out); {} chunks, {} of "
      "worker CPU",
      stats.workers.size(), stats.workers.size() == 1 ? "" : "s", stats.replacements, stats.crashes,
      stats.timeouts,
      group_digits(static_cast<std::int64_t>(stats.chunks.size() + stats.chunks_not_recorded)),
      format_duration(cpu));
}

void print_text(const PrimesJob& job, const PrimesResult& result) {
  std::string details = describe_job(job) + "\n";
  if (result.process_stats) details += describe_processes(*result.process_stats) + "\n";
  if (result.interrupted) {
    // Everything on stderr: stdout carries answers only, and there is none.
    print_diagnostic("{}\n{}{}", interruption_line(job, result, true), details,
                     format_timing(result.timing));
    return;
  }
  fmt::print("sum of primes below {} = {}\n", group_digits(job.below), group_digits(result.sum));
  fmt::print("answer: {}\n", result.sum);
  fmt::print("{}{}", details, format_timing(result.timing));
  flush_stdout();
}

}  // namespace

std::string_view engine_name(Engine engine) {
  switch (engine) {
    case Engine::kSerial:
      return "serial";
    case Engine::kThread:
      return "thread";
    case Engine::kProcess:
      return "process";
  }
  return "unknown";
}

std::string group_digits(std::int64_t value) {
  const std::string digits = fmt::format("{}", value);
  const std::size_t sign = value < 0 ? 1 : 0;
  std::string out = digits.substr(0, sign);
  for (std::size_t i = sign; i < digits.size(); ++i) {
    if (i > sign && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

PrimesResult run_primes(const PrimesJob& job, std::stop_token stop, ProgressBar& progress) {
  Stopwatch watch;
  PrimesResult result;
  switch (job.engine) {
    case Engine::kSerial:
      result = run_serial(job.below, stop, progress);
      break;
    case Engine::kThread:
      result = run_thread(job, stop, progress);
      break;
    case Engine::kProcess:
      result = run_process(job, stop, progress);
      break;
  }
  // After the pool's shutdown: its threads' (or processes') start and exit are part of what the
  // job cost, and reaped workers' CPU is in the children_* figures.
  result.timing = watch.elapsed();
  progress.finish();
  if (job.engine != Engine::kSerial) count_chunks(job, result);
  return result;
}

std::size_t effective_chunksize(const PrimesJob& job) {
  if (job.engine == Engine::kSerial) return 0;
  if (job.chunksize) return *job.chunksize;
  // As ProcessStreamRun picks it: a timeout applies per item, so crew keeps one item per chunk.
  if (job.engine == Engine::kProcess && job.task_timeout) return 1;
  return crew::detail::auto_chunksize(static_cast<std::size_t>(job.below), job.workers);
}

std::size_t chunk_count(const PrimesJob& job) {
  const std::size_t chunksize = effective_chunksize(job);
  if (chunksize == 0) return 0;
  return (static_cast<std::size_t>(job.below) + chunksize - 1) / chunksize;
}

std::string describe_job(const PrimesJob& job) {
  if (job.engine == Engine::kSerial) {
    return fmt::format("engine: serial ({})", job.workers_reason);
  }
  std::string text =
      fmt::format("engine: {}, workers: {} ({}), chunksize: {}", engine_name(job.engine),
                  job.workers, job.workers_reason,
                  job.chunksize ? group_digits(static_cast<std::int64_t>(*job.chunksize))
                                : fmt::format("auto ({})", group_digits(static_cast<std::int64_t>(
                                                               effective_chunksize(job)))));
  if (job.task_timeout) {
    text += ", task timeout: " + format_duration(*job.task_timeout);
  }
  if (job.max_tasks_per_child) {
    text += fmt::format(", max tasks per child: {}", *job.max_tasks_per_child);
  }
  return text;
}

std::int64_t parse_whole_option(std::string_view text, std::int64_t min, std::int64_t max,
                                std::string_view option) {
  try {
    return crew::workloads::parse_count_in_range(text, min, max, option);
  } catch (const std::invalid_argument& error) {
    throw UsageError(error.what());
  }
}

std::int64_t parse_below(std::string_view text) {
  return parse_whole_option(text, 0, kMaxPrimesBelow, "--below");
}

CLI::App* add_primes_command(CLI::App& app, PrimesArgs& args) {
  CLI::App* command = app.add_subcommand(
      "primes", "The article's CPU job: sum the primes below N, on one engine, timed like %%time.");
  command->footer(
      "Examples:\n"
      "  crew primes                                  # primes below 1e6 on a ThreadPool\n"
      "  crew primes --below 1e7 --engine serial      # the article's for loop\n"
      "  crew primes --below 1e7 --workers 2 --chunksize 1000 --json\n"
      "  crew primes --below 1e7 --engine process     # the article's multiprocessing.Pool\n"
      "  crew primes --engine process --chunksize 1000 --task-timeout 2s --max-tasks-per-child 50\n"
      "\n"
      "Exit codes: 0 done, 1 failure, 2 usage error, 130 interrupted (Ctrl-C; a second Ctrl-C\n"
      "exits at once). The JSON fields are described in docs/cli.md.");
  command
      ->add_option("--below", args.below,
                   "Sum the primes below N: 0 to 1e10, as digits (10000000, 10_000_000,\n"
                   "10,000,000) or in e-notation (1e7). Default: 1000000, the article's N.")
      ->type_name("N");
  command
      ->add_option("--engine", args.engine,
                   "Where the numbers are checked. Default: thread.\n"
                   "  serial  one loop on the calling thread: the article's first run\n"
                   "  thread  crew::ThreadPool, imap over the numbers in chunks\n"
                   "  process crew::ProcessPool, the same imap on forked worker processes")
      ->type_name("ENGINE");
  const WorkerCount workers = default_worker_count();
  command
      ->add_option(
          "--workers", args.workers,
          fmt::format("Threads for --engine thread (1 to {}) or processes for --engine process\n"
                      "(1 to {}). Default: {}, the CPUs this process may use ({}).",
                      ThreadPool::kMaxWorkers, ProcessPool::kMaxWorkers, workers.count,
                      workers.reason))
      ->type_name("W");
  command
      ->add_option("--chunksize", args.chunksize,
                   "Numbers per task for --engine thread or process: 1 or more (at most\n"
                   "1,048,576 for process), or auto. Default: auto, about 64 chunks per worker\n"
                   "and at most 65,536 numbers per chunk (1 per chunk with --task-timeout).")
      ->type_name("C");
  command
      ->add_option("--task-timeout", args.task_timeout,
                   "--engine process only: a chunk of C numbers that runs longer than C times\n"
                   "this fails the run (exit 1) and its worker is killed and replaced. 500ms,\n"
                   "2s, 1.5s, or a bare number of milliseconds; more than 0, at most 86400s.\n"
                   "Default: no limit.")
      ->type_name("MS");
  command
      ->add_option("--max-tasks-per-child", args.max_tasks_per_child,
                   "--engine process only: replace a worker process by a new one after it ran\n"
                   "N chunks (1 or more). Default: workers live as long as the run.")
      ->type_name("N");
  command->add_flag("--json", args.json,
                    "Print one JSON object on stdout instead of text (and no progress bar).\n"
                    "Default: off.");
  return command;
}

PrimesJob resolve_primes_args(const PrimesArgs& args) {
  PrimesJob job;
  job.below = parse_below(args.below);
  job.engine = parse_engine(args.engine);
  // Refused rather than ignored: a user who asks for a timeout and runs without one would trust a
  // limit that is not there.
  if (job.engine != Engine::kProcess) {
    if (!args.task_timeout.empty()) {
      throw UsageError(fmt::format("--task-timeout applies to --engine process only, not {}",
                                   engine_name(job.engine)));
    }
    if (!args.max_tasks_per_child.empty()) {
      throw UsageError(fmt::format("--max-tasks-per-child applies to --engine process only, not {}",
                                   engine_name(job.engine)));
    }
  }
  if (job.engine == Engine::kSerial) {
    // Refused rather than ignored: a user who asks for 4 workers and gets 1 would misread the time.
    if (!args.workers.empty()) {
      throw UsageError(
          "--workers applies to --engine thread or process only (serial runs on one thread)");
    }
    if (args.chunksize != "auto") {
      throw UsageError(
          "--chunksize applies to --engine thread or process only (serial has no chunks)");
    }
    job.workers = 1;
    job.workers_reason = "one loop on the calling thread, no pool";
    return job;
  }
  if (args.workers.empty()) {
    WorkerCount workers = default_worker_count();
    job.workers = workers.count;
    job.workers_reason = std::move(workers.reason);
  } else {
    job.workers = parse_workers(args.workers, job.engine);
    job.workers_reason = "--workers";
  }
  job.chunksize = parse_chunksize(args.chunksize);
  if (job.engine == Engine::kProcess && job.chunksize && *job.chunksize > kMaxProcessChunksize) {
    throw UsageError(fmt::format(
        "--chunksize for --engine process must be at most {} (each chunk's numbers are copied "
        "to a worker process, 8 bytes each), got {}",
        group_digits(static_cast<std::int64_t>(kMaxProcessChunksize)), args.chunksize));
  }
  if (!args.task_timeout.empty()) job.task_timeout = parse_task_timeout(args.task_timeout);
  if (!args.max_tasks_per_child.empty()) {
    job.max_tasks_per_child = parse_max_tasks_per_child(args.max_tasks_per_child);
  }
  if (job.task_timeout && job.chunksize) {
    // crew gives a chunk its item count times the timeout; past ~100 years the deadline would no
    // longer fit a steady_clock time point.
    constexpr std::int64_t kMaxChunkDeadlineMs = std::int64_t{3'000'000'000'000};
    const std::int64_t numbers =
        std::min<std::int64_t>(static_cast<std::int64_t>(*job.chunksize), job.below);
    if (numbers > 0 && job.task_timeout->count() > kMaxChunkDeadlineMs / numbers) {
      throw UsageError(fmt::format(
          "--task-timeout {} × --chunksize {} gives a chunk longer than 3e12 ms; use a smaller "
          "timeout or chunk size",
          args.task_timeout, args.chunksize));
    }
  }
  return job;
}

int run_primes_command(const PrimesArgs& args, const InterruptWatcher& interrupt) {
  const PrimesJob job = resolve_primes_args(args);
  ProgressBar progress(!args.json && ProgressBar::stderr_is_terminal(), "numbers");
  const PrimesResult result = run_primes(job, interrupt.stop_token(), progress);
  if (args.json) {
    print_json(job, result);
    if (result.interrupted) {
      print_diagnostic("{}\n", interruption_line(job, result, false));
    }
  } else {
    print_text(job, result);
  }
  if (!result.interrupted) return 0;
  return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
}

}  // namespace crew::cli
