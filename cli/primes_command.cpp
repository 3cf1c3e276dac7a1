#include "primes_command.hpp"

#include <fmt/format.h>
#include <crew/errors.hpp>
#include <crew/thread_pool.hpp>
#include <crew/version.hpp>
#include <crew/worker_count.hpp>
#include <crew/workloads/primes.hpp>

#include <algorithm>
#include <cstdio>
#include <ranges>
#include <utility>

#include "json_output.hpp"

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

PrimesResult run_thread(const PrimesJob& job, std::stop_token stop, ProgressBar& progress) {
  PrimesResult result;
  // The article's Pool().map, made lazy: imap keeps a bounded window of chunks in flight, so memory
  // stays flat even for N = 1e10 (map would hold N results).
  ThreadPool pool({.workers = job.workers});
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
  return result;
}

// "--workers" text → a worker count within what ThreadPool accepts.
std::size_t parse_workers(std::string_view text) {
  try {
    return static_cast<std::size_t>(crew::workloads::parse_count_in_range(
        text, 1, static_cast<std::int64_t>(ThreadPool::kMaxWorkers), "--workers"));
  } catch (const std::invalid_argument& error) {
    throw UsageError(error.what());
  }
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
  if (text == "process") {
    throw UsageError(
        "--engine process is not available yet: the process engine lands with the ProcessPool "
        "issue; use serial or thread");
  }
  throw UsageError(fmt::format("--engine must be serial or thread, got \"{}\"", text));
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
  std::fputs(json_line(document).c_str(), stdout);
  std::fflush(stdout);
}

void print_text(const PrimesJob& job, const PrimesResult& result) {
  if (result.interrupted) {
    // Everything on stderr: stdout carries answers only, and there is none.
    fmt::print(stderr, "interrupted: {} of {} numbers checked (sum of the primes below {} = {})\n",
               group_digits(result.checked), group_digits(job.below), group_digits(result.checked),
               group_digits(result.sum));
    fmt::print(stderr, "{}\n{}", describe_job(job), format_timing(result.timing));
    return;
  }
  fmt::print("sum of primes below {} = {}\n", group_digits(job.below), group_digits(result.sum));
  fmt::print("answer: {}\n", result.sum);
  fmt::print("{}\n{}", describe_job(job), format_timing(result.timing));
  std::fflush(stdout);
}

}  // namespace

std::string_view engine_name(Engine engine) {
  switch (engine) {
    case Engine::kSerial:
      return "serial";
    case Engine::kThread:
      return "thread";
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
  PrimesResult result = job.engine == Engine::kSerial ? run_serial(job.below, stop, progress)
                                                      : run_thread(job, stop, progress);
  // After the pool's shutdown: its threads' start and exit are part of what the job cost.
  result.timing = watch.elapsed();
  progress.finish();
  return result;
}

std::string describe_job(const PrimesJob& job) {
  if (job.engine == Engine::kSerial) {
    return fmt::format("engine: serial ({})", job.workers_reason);
  }
  return fmt::format("engine: thread, workers: {} ({}), chunksize: {}", job.workers,
                     job.workers_reason,
                     job.chunksize ? group_digits(static_cast<std::int64_t>(*job.chunksize))
                                   : std::string("auto"));
}

std::int64_t parse_below(std::string_view text) {
  try {
    return crew::workloads::parse_count_in_range(text, 0, kMaxPrimesBelow, "--below");
  } catch (const std::invalid_argument& error) {
    throw UsageError(error.what());
  }
}

CLI::App* add_primes_command(CLI::App& app, PrimesArgs& args) {
  CLI::App* command = app.add_subcommand(
      "primes", "The article's CPU job: sum the primes below N, on one engine, timed like %%time.");
  command->footer(
      "Examples:\n"
      "  crew primes                                  # primes below 1e6 on a ThreadPool\n"
      "  crew primes --below 1e7 --engine serial      # the article's for loop\n"
      "  crew primes --below 1e7 --workers 2 --chunksize 1000 --json\n"
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
                   "(process: not available yet; it lands with the ProcessPool issue.)")
      ->type_name("ENGINE");
  const WorkerCount workers = default_worker_count();
  command
      ->add_option("--workers", args.workers,
                   fmt::format("Threads for --engine thread: 1 to {}. Default: {}, the CPUs this\n"
                               "process may use ({}).",
                               ThreadPool::kMaxWorkers, workers.count, workers.reason))
      ->type_name("W");
  command
      ->add_option("--chunksize", args.chunksize,
                   "Numbers per task for --engine thread: 1 or more, or auto. Default: auto,\n"
                   "about 64 chunks per worker and at most 65,536 numbers per chunk.")
      ->type_name("C");
  command->add_flag("--json", args.json,
                    "Print one JSON object on stdout instead of text (and no progress bar).\n"
                    "Default: off.");
  return command;
}

PrimesJob resolve_primes_args(const PrimesArgs& args) {
  PrimesJob job;
  job.below = parse_below(args.below);
  job.engine = parse_engine(args.engine);
  if (job.engine == Engine::kSerial) {
    // Refused rather than ignored: a user who asks for 4 workers and gets 1 would misread the time.
    if (!args.workers.empty()) {
      throw UsageError("--workers applies to --engine thread only (serial runs on one thread)");
    }
    if (args.chunksize != "auto") {
      throw UsageError("--chunksize applies to --engine thread only (serial has no chunks)");
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
    job.workers = parse_workers(args.workers);
    job.workers_reason = "--workers";
  }
  job.chunksize = parse_chunksize(args.chunksize);
  return job;
}

int run_primes_command(const PrimesArgs& args, const InterruptWatcher& interrupt) {
  const PrimesJob job = resolve_primes_args(args);
  ProgressBar progress(!args.json && ProgressBar::stderr_is_terminal(), "numbers");
  const PrimesResult result = run_primes(job, interrupt.stop_token(), progress);
  if (args.json) {
    print_json(job, result);
    if (result.interrupted) {
      fmt::print(stderr, "interrupted: {} of {} numbers checked\n", group_digits(result.checked),
                 group_digits(job.below));
    }
  } else {
    print_text(job, result);
  }
  if (!result.interrupted) return 0;
  return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
}

}  // namespace crew::cli
