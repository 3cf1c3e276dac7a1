#include "bench_command.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <crew/duration.hpp>
#include <crew/errors.hpp>
#include <crew/latency_server.hpp>
#include <crew/process_pool.hpp>
#include <crew/sweep.hpp>
#include <crew/sweep_runner.hpp>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>
#include <crew/worker_count.hpp>
#include <crew/workloads/fetch.hpp>
#include <crew/workloads/primes.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench_python.hpp"
#include "bench_report.hpp"
#include "bench_samplers.hpp"
#include "demo_command.hpp"  // known_prime_sum
#include "json_output.hpp"
#include "primes_command.hpp"
#include "progress_bar.hpp"
#include "serve_child.hpp"
#include "standard_streams.hpp"

namespace crew::cli {
namespace {

using Clock = std::chrono::steady_clock;

enum class Job { kCpu, kIo, kSynthetic };

// A sweep estimated to take longer than this needs --yes.
constexpr double kConfirmAboveSeconds = 600;
constexpr std::size_t kMaxRepeat = 100;
constexpr std::int64_t kMaxTimeMs = 3'600'000;
constexpr std::size_t kIoDefaultMaxWorkers = 256;
constexpr std::int64_t kMaxUrls = 100'000;
constexpr std::int64_t kMaxTasks = 10'000'000;

struct BenchPlan {
  Job job = Job::kCpu;
  std::int64_t below = 1'000'000;
  std::size_t urls = 128;
  std::chrono::milliseconds latency{20};
  std::uint64_t body_bytes = 5 * 1024;
  std::vector<double> cpu_us;
  double io_us = 0;
  std::size_t tasks = 2000;
  std::vector<std::string> engines;  // the engines other than serial, in the order they run
  std::vector<std::size_t> workers;  // the worker counts of each engine
  sweep::RunPolicy policy;
  std::size_t cores = 1;
  bool json = false;
  bool csv = false;
  std::string plot;
  bool compare_python = false;
  bool yes = false;
};

std::string_view job_name(Job job) {
  switch (job) {
    case Job::kCpu:
      return "cpu";
    case Job::kIo:
      return "io";
    case Job::kSynthetic:
      return "synthetic";
  }
  return "?";
}

// "10,100,1000" → {10, 100, 1000}: whole microseconds, 0 … 1 s each, at most 20 sizes.
std::vector<double> parse_cpu_sizes(std::string_view text) {
  std::vector<double> sizes;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    sizes.push_back(static_cast<double>(parse_whole_option(item, 0, 1'000'000, "--cpu-us")));
    start = comma + 1;
  }
  if (sizes.size() > 20) throw UsageError("--cpu-us takes at most 20 sizes");
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

std::vector<std::string> parse_engines(std::string_view text, Job job) {
  std::vector<std::string> allowed = {"thread", "process"};
  if (job == Job::kIo) allowed.push_back("event-loop");
  if (text.empty()) return allowed;
  std::vector<std::string> engines;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string name(text.substr(start, comma - start));
    start = comma + 1;
    if (name == "serial") continue;  // always measured: it is the baseline
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      throw UsageError(
          fmt::format("--engines: \"{}\" is not an engine of the {} job (it has serial, {})", name,
                      job_name(job), fmt::join(allowed, ", ")));
    }
    if (std::find(engines.begin(), engines.end(), name) == engines.end()) engines.push_back(name);
  }
  return engines;
}

// --repeat N is an exact count; otherwise runs go on as hyperfine's do, between --min-runs and
// --max-runs, until the relative standard error is at most --target-rse or --max-time is spent.
sweep::RunPolicy resolve_policy(const BenchArgs& args) {
  sweep::RunPolicy policy;
  const auto whole = [](const std::string& text, std::int64_t min, std::string_view option) {
    return static_cast<std::size_t>(
        parse_whole_option(text, min, static_cast<std::int64_t>(kMaxRepeat), option));
  };
  policy.warmup = whole(args.warmup, 0, "--warmup");
  if (!args.repeat.empty()) {
    if (!args.min_runs.empty() || !args.max_runs.empty() || !args.target_rse.empty() ||
        !args.max_time.empty()) {
      throw UsageError(
          "--repeat is an exact count of runs: leave out --min-runs, --max-runs, --target-rse "
          "and --max-time, or --repeat");
    }
    return sweep::RunPolicy::exactly(whole(args.repeat, 1, "--repeat"), policy.warmup);
  }
  if (!args.min_runs.empty()) policy.min_runs = whole(args.min_runs, 1, "--min-runs");
  if (!args.max_runs.empty()) {
    policy.max_runs = whole(args.max_runs, 1, "--max-runs");
  } else {
    policy.max_runs = std::max(policy.max_runs, policy.min_runs);  // as hyperfine's --min-runs
  }
  if (policy.min_runs > policy.max_runs) {
    throw UsageError(
        fmt::format("--min-runs {} is above --max-runs {}", policy.min_runs, policy.max_runs));
  }
  if (!args.target_rse.empty()) {
    std::string_view text = args.target_rse;
    if (text.ends_with('%')) text.remove_suffix(1);
    double percent = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), percent);
    if (error != std::errc() || end != text.data() + text.size() || !(percent > 0) ||
        percent > 100) {
      throw UsageError(fmt::format(
          "--target-rse takes a percentage above 0 and at most 100 (2 or 2%), got \"{}\"",
          args.target_rse));
    }
    policy.target_rse = percent / 100;
  }
  if (!args.max_time.empty()) {
    const ParsedDuration parsed = parse_milliseconds(args.max_time);
    if (parsed.error != DurationError::kNone || parsed.milliseconds == 0 ||
        parsed.milliseconds > kMaxTimeMs) {
      throw UsageError(fmt::format(
          "--max-time takes a duration above 0 and at most 1 hour (500ms, 2s), got \"{}\"",
          args.max_time));
    }
    policy.max_time = std::chrono::milliseconds(parsed.milliseconds);
  }
  return policy;
}

BenchPlan resolve(const BenchArgs& args) {
  BenchPlan plan;
  if (args.job == "cpu") {
    plan.job = Job::kCpu;
  } else if (args.job == "io") {
    plan.job = Job::kIo;
  } else if (args.job == "synthetic") {
    plan.job = Job::kSynthetic;
  } else {
    throw UsageError(fmt::format("the job must be cpu, io or synthetic, got \"{}\"", args.job));
  }
  const BenchArgs defaults;
  // Options of another job are a mistake worth saying, not something to ignore.
  const bool cpu_options = args.below != defaults.below;
  const bool io_options =
      args.urls != defaults.urls || args.latency != defaults.latency || args.body != defaults.body;
  const bool synthetic_options = args.cpu_us != defaults.cpu_us || args.io_us != defaults.io_us ||
                                 args.tasks != defaults.tasks;
  if ((cpu_options && plan.job != Job::kCpu) || (io_options && plan.job != Job::kIo) ||
      (synthetic_options && plan.job != Job::kSynthetic)) {
    throw UsageError(fmt::format(
        "--below is for the cpu job, --urls/--latency/--body for io, --cpu-us/--io-us/--tasks "
        "for synthetic; this is the {} job",
        job_name(plan.job)));
  }
  plan.cores = default_worker_count().count;
  switch (plan.job) {
    case Job::kCpu:
      plan.below = parse_below(args.below);
      break;
    case Job::kIo:
      plan.urls = static_cast<std::size_t>(parse_whole_option(args.urls, 1, kMaxUrls, "--urls"));
      try {
        plan.latency = parse_latency(args.latency);
        plan.body_bytes = parse_byte_size(args.body);
      } catch (const std::invalid_argument& error) {
        throw UsageError(fmt::format("--latency/--body: {}", error.what()));
      }
      break;
    case Job::kSynthetic:
      plan.cpu_us = parse_cpu_sizes(args.cpu_us);
      plan.io_us = static_cast<double>(parse_whole_option(args.io_us, 0, 1'000'000, "--io-us"));
      plan.tasks =
          static_cast<std::size_t>(parse_whole_option(args.tasks, 1, kMaxTasks, "--tasks"));
      if (plan.cpu_us.back() == 0 && plan.io_us == 0) {
        throw UsageError("--cpu-us and --io-us are all 0: the tasks would do nothing");
      }
      break;
  }
  plan.engines = parse_engines(args.engines, plan.job);
  const bool io_bound =
      plan.job == Job::kIo || (plan.job == Job::kSynthetic && plan.io_us > plan.cpu_us.back());
  const std::size_t default_max = io_bound ? kIoDefaultMaxWorkers : 4 * plan.cores;
  std::size_t max_workers = default_max;
  if (!args.max_workers.empty()) {
    max_workers = static_cast<std::size_t>(parse_whole_option(
        args.max_workers, 1, static_cast<std::int64_t>(ProcessPool::kMaxWorkers), "--max-workers"));
  }
  // More workers than URLs would only repeat the last point.
  if (plan.job == Job::kIo) max_workers = std::min(max_workers, plan.urls);
  plan.workers = sweep::worker_counts(max_workers);
  // The core count is where CPU-bound curves should bend: always measure it.
  if (plan.cores <= max_workers &&
      std::find(plan.workers.begin(), plan.workers.end(), plan.cores) == plan.workers.end()) {
    plan.workers.push_back(plan.cores);
    std::sort(plan.workers.begin(), plan.workers.end());
  }
  plan.policy = resolve_policy(args);
  if (args.json && args.csv) throw UsageError("--json and --csv both print on stdout: pick one");
  plan.json = args.json;
  plan.csv = args.csv;
  plan.plot = args.plot;
  if (!plan.plot.empty() && !plan.plot.ends_with(".png")) {
    throw UsageError(
        fmt::format("--plot writes a PNG: give a path ending in .png, got \"{}\"", plan.plot));
  }
  plan.compare_python = args.compare_python;
  if (plan.compare_python && plan.job == Job::kSynthetic) {
    throw UsageError("--compare-python runs the article's own code: for the cpu and io jobs only");
  }
  plan.yes = args.yes;
  return plan;
}

// --- what a sample costs, before running it -----------------------------------------------------

// Seconds the serial run of the CPU job takes, from a short calibration run (is_prime costs about
// N^1.5 / ln N for N numbers; N^1.5 is close enough for an estimate).
double estimate_primes_serial(std::int64_t below) {
  const std::int64_t probe = std::min<std::int64_t>(below, 200'000);
  if (probe == 0) return 0;
  const auto start = Clock::now();
  (void)workloads::sum_primes_below(probe);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return seconds * std::pow(static_cast<double>(below) / static_cast<double>(probe), 1.5);
}

// The most the sweep can take: each point's runs at their worst under the policy.
double estimate_seconds(const BenchPlan& plan) {
  const auto cores = static_cast<double>(plan.cores);
  double total = 0;
  auto add_sweep = [&](double serial_s, double cpu_share) {
    // cpu_share: the part of the serial time that is CPU (divides by min(w, cores)); the rest
    // waits (divides by w).
    total += sweep::worst_case_seconds(plan.policy, serial_s);
    for (const std::string& engine : plan.engines) {
      for (const std::size_t w : plan.workers) {
        const double wd = static_cast<double>(w);
        double run = serial_s * cpu_share / std::min(wd, cores) + serial_s * (1 - cpu_share) / wd;
        if (engine == "process") run += 0.005 + 0.003 * wd;  // forks and reaping
        total += sweep::worst_case_seconds(plan.policy, run);
      }
    }
  };
  switch (plan.job) {
    case Job::kCpu:
      add_sweep(estimate_primes_serial(plan.below), 1.0);
      if (plan.compare_python) {
        // The article's Python, measured here: ~1.3 µs per number in its loop and in Pool(2),
        // ~32 µs in ThreadPoolExecutor.map (a Future per number, all behind the GIL).
        total += static_cast<double>(plan.below) * 35e-6;
      }
      break;
    case Job::kIo: {
      const double serial =
          static_cast<double>(plan.urls) * std::chrono::duration<double>(plan.latency).count();
      add_sweep(serial, 0.0);
      if (plan.compare_python) total += serial * 1.3;
      break;
    }
    case Job::kSynthetic:
      for (const double cpu_us : plan.cpu_us) {
        const double per_task = (cpu_us + plan.io_us) * 1e-6;
        const double share = per_task > 0 ? cpu_us * 1e-6 / per_task : 0;
        add_sweep(static_cast<double>(plan.tasks) * per_task, share);
      }
      break;
  }
  return total;
}

// "3 runs per point" or "1 warm-up, then 3 … 20 runs per point until ±2 % or 2 s".
std::string runs_text(const sweep::RunPolicy& policy) {
  const std::string warmup = policy.warmup == 0 ? std::string()
                                                : fmt::format("{} warm-up{}, then ", policy.warmup,
                                                              policy.warmup == 1 ? "" : "s");
  if (policy.exact()) {
    return fmt::format("{}{} run{} per point", warmup, policy.max_runs,
                       policy.max_runs == 1 ? "" : "s");
  }
  return fmt::format(
      "{}{} … {} runs per point, until the mean is within ±{:g} % (standard error) "
      "or {} is spent",
      warmup, policy.min_runs, policy.max_runs, policy.target_rse * 100,
      seconds_text(policy.max_time.count()));
}

std::string describe(const BenchPlan& plan, double cpu_us = 0) {
  switch (plan.job) {
    case Job::kCpu:
      return fmt::format("primes below {}", group_digits(plan.below));
    case Job::kIo:
      return fmt::format("{} URLs × {} × {} (a crew serve child on 127.0.0.1)", plan.urls,
                         format_duration(plan.latency),
                         format_bytes(static_cast<std::int64_t>(plan.body_bytes)));
    case Job::kSynthetic:
      return fmt::format("{} tasks × ({:g} µs CPU + {:g} µs sleep)", plan.tasks, cpu_us,
                         plan.io_us);
  }
  return {};
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchArgs& args) {
  CLI::App* command = app.add_subcommand(
      "bench",
      "The when: run a job on every engine across doubling worker counts, against serial in\n"
      "the same run; print speed-up and efficiency, a plot, and which engine to use, and why.");
  command->footer(
      "Jobs:\n"
      "  cpu        the article's primes sum (--below N)\n"
      "  io         fetch --urls N URLs from a crew serve child that waits --latency each\n"
      "  synthetic  --tasks N tasks that each burn --cpu-us µs of CPU, then sleep --io-us µs;\n"
      "             several --cpu-us sizes (10,100,1000) give the break-even task size\n"
      "\n"
      "Examples:\n"
      "  crew bench cpu --below 1000000 --plot cpu.png\n"
      "  crew bench io --plot io.png                  # 128 URLs × 20 ms, workers 1 … 128\n"
      "  crew bench synthetic --cpu-us 1,10,100,1000 --tasks 5000\n"
      "  crew bench cpu --compare-python               # the article's own Python beside crew\n"
      "  crew bench io --engines thread,event-loop --max-workers 64 --json\n"
      "\n"
      "Runs: each point gets --warmup runs thrown away, then runs until the standard error of\n"
      "its mean is within --target-rse or --max-time is spent (--min-runs … --max-runs), as\n"
      "hyperfine does; --repeat R asks for exactly R. The table shows mean ± σ, min … max and the\n"
      "speed-up's 95 % interval; the verdict names an engine only when it beats serial and the\n"
      "runner-up beyond the noise (Welch's t-test), else says \"Inconclusive\" with the figures.\n"
      "Warnings (stderr) flag a busy machine, outliers and efficiency above 100 % (noise).\n"
      "\n"
      "Exit codes: 0 done (a verdict or an inconclusive one), 1 a run failed (wrong answer, a URL\n"
      "failed) or gnuplot/python3 is missing for --plot/--compare-python (checked before any "
      "run),\n"
      "2 usage error or a sweep that could take over 10 minutes without --yes, 130 interrupted\n"
      "(the points measured so far are printed). docs/cli.md describes the JSON and CSV.");
  command->add_option("job", args.job, "cpu, io or synthetic.")->type_name("JOB")->required();
  command
      ->add_option("--below", args.below,
                   "cpu: sum the primes below N (0 to 1e10). Default: 1000000.")
      ->type_name("N");
  command->add_option("--urls", args.urls, "io: URLs per run. Default: 128.")->type_name("N");
  command
      ->add_option("--latency", args.latency, "io: the server's wait per request. Default: 20ms.")
      ->type_name("DURATION");
  command->add_option("--body", args.body, "io: each response's size. Default: 5KiB.")
      ->type_name("SIZE");
  command
      ->add_option("--cpu-us", args.cpu_us,
                   "synthetic: µs of CPU per task, one size or several (10,100,1000).\n"
                   "Default: 10,100,1000.")
      ->type_name("A[,B,...]");
  command->add_option("--io-us", args.io_us, "synthetic: µs of sleep per task. Default: 0.")
      ->type_name("C");
  command->add_option("--tasks", args.tasks, "synthetic: tasks per run. Default: 2000.")
      ->type_name("N");
  command
      ->add_option("--engines", args.engines,
                   "Engines to sweep besides serial (always measured): thread, process, and for\n"
                   "io event-loop. Default: all of them.")
      ->type_name("LIST");
  command
      ->add_option("--max-workers", args.max_workers,
                   "Workers double from 1 up to N (and the core count is always measured).\n"
                   "Default: 4 × cores for CPU jobs, 256 for IO jobs (io: at most --urls).")
      ->type_name("N");
  command
      ->add_option("--warmup", args.warmup,
                   "Runs of each point made first and thrown away (first forks, cold caches).\n"
                   "Default: 1.")
      ->type_name("N");
  command->add_option("--min-runs", args.min_runs, "Counted runs per point, at least. Default: 3.")
      ->type_name("N");
  command->add_option("--max-runs", args.max_runs, "Counted runs per point, at most. Default: 20.")
      ->type_name("N");
  command
      ->add_option("--target-rse", args.target_rse,
                   "Stop a point's runs once the standard error of its mean is at most this\n"
                   "percentage of the mean. Default: 2 (%).")
      ->type_name("PERCENT");
  command
      ->add_option("--max-time", args.max_time,
                   "…or once its counted runs took this long (500ms, 2s). Default: 2s.")
      ->type_name("DURATION");
  command
      ->add_option("--repeat", args.repeat,
                   "Exactly R counted runs per point instead (no --min-runs … --max-time).")
      ->type_name("R");
  command->add_flag("--json", args.json, "Print one JSON object instead of the table.");
  command->add_flag("--csv", args.csv, "Print the points as CSV instead of the table.");
  command->add_option("--plot", args.plot, "Draw speed-up against workers into FILE.png (gnuplot).")
      ->type_name("FILE");
  command->add_flag("--compare-python", args.compare_python,
                    "cpu, io: also run the article's own Python on the same job (python3).");
  command->add_flag("--yes", args.yes,
                    "Run a sweep that could take over 10 minutes (every point at its limit).");
  return command;
}

int run_bench_command(const BenchArgs& args, const InterruptWatcher& interrupt) {
  const BenchPlan plan = resolve(args);
  const double estimate = estimate_seconds(plan);
  if (estimate > kConfirmAboveSeconds && !plan.yes) {
    throw UsageError(fmt::format(
        "this sweep could take up to {} ({} engines × {} worker counts × up to {} runs besides "
        "serial); add --yes to run it, or lower --max-time, --max-runs, --repeat, --max-workers "
        "or the job's size",
        seconds_text(estimate), plan.engines.size(), plan.workers.size(), plan.policy.max_runs));
  }
  // What a sweep needs besides itself is checked before it starts, not after it ran.
  if (!plan.plot.empty() && !find_program("gnuplot")) {
    print_diagnostic(
        "crew bench: --plot needs gnuplot, which is not on PATH; install gnuplot-nox (nothing "
        "was run)\n");
    return 1;
  }
  if (plan.compare_python && !find_program(python_program())) {
    print_diagnostic(fmt::format(
        "crew bench: --compare-python needs {}, which is not {}; install python3 or set "
        "CREW_PYTHON (nothing was run)\n",
        python_program(),
        python_program().find('/') != std::string::npos ? "executable" : "on PATH"));
    return 1;
  }
  const bool quiet = plan.json || plan.csv;
  if (!quiet) {
    fmt::print("crew bench {}: {}; {} cores; {} (at most {})\n\n", job_name(plan.job),
               describe(plan, plan.cpu_us.empty() ? 0 : plan.cpu_us.front()), plan.cores,
               runs_text(plan.policy), seconds_text(estimate));
    flush_stdout();
  }

  const std::stop_token stop = interrupt.stop_token();
  ProgressBar progress(ProgressBar::stderr_is_terminal(), "runs");
  const std::size_t sweeps = plan.job == Job::kSynthetic ? plan.cpu_us.size() : 1;
  // Runs done in the sweeps before this one, and the runs expected in all of them (the sizes
  // not yet started are guessed at this sweep's count).
  std::size_t done_before = 0;
  std::size_t sweeps_done = 0;
  std::size_t done = 0;
  // Until the first run reports: every point's warm-ups and minimum runs.
  std::size_t total = sweeps * (1 + plan.engines.size() * plan.workers.size()) *
                      (plan.policy.warmup + plan.policy.min_runs);
  const auto run_sweep = [&](std::string job, std::string description,
                             const sweep::Sampler& sampler) {
    const sweep::SweepSpec spec{
        .job = std::move(job),
        .description = std::move(description),
        .cores = plan.cores,
        .engines = plan.engines,
        .workers = plan.workers,
        .policy = plan.policy,
        .cpu_bound_job = plan.job == Job::kCpu || (plan.job == Job::kSynthetic && plan.io_us == 0)};
    sweep::Sweep measured = sweep::run_sweep(
        spec, sampler, stop, [&](std::size_t sweep_done, std::size_t sweep_expected) {
          done = done_before + sweep_done;
          total = done_before + sweep_expected * (sweeps - sweeps_done);
          progress.update(done, total);
        });
    done_before = done;
    ++sweeps_done;
    return measured;
  };

  std::vector<sweep::TaskSizeSweep> results;
  std::vector<std::string> urls;
  std::string failure;
  try {
    switch (plan.job) {
      case Job::kCpu: {
        std::optional<std::int64_t> answer;
        results.push_back(
            {0, run_sweep("cpu", describe(plan), primes_sampler(plan.below, stop, answer))});
        if (answer) {
          if (const auto known = known_prime_sum(plan.below); known && *known != *answer) {
            throw std::runtime_error(
                fmt::format("wrong answer: {} where the known sum is {}", *answer, *known));
          }
        }
        if (plan.compare_python && !results.back().sweep.interrupted) {
          compare_python_cpu(plan.below, plan.cores, results.back().sweep);
        }
        break;
      }
      case Job::kIo: {
        const workloads::FdBudget budget = workloads::reserve_file_descriptors(
            plan.workers.back(), workloads::fds_per_transfer(workloads::FetchEngine::kThread));
        if (!budget.warning.empty()) print_diagnostic("crew bench: warning: {}\n", budget.warning);
        ServeChild server(plan.latency, plan.body_bytes);
        urls = workloads::local_urls(server.port(), plan.urls);
        results.push_back({0, run_sweep("io", describe(plan), fetch_sampler(urls, stop))});
        if (plan.compare_python && !results.back().sweep.interrupted) {
          compare_python_io(urls, results.back().sweep);
        }
        break;
      }
      case Job::kSynthetic:
        for (const double cpu_us : plan.cpu_us) {
          const std::vector<SyntheticTask> tasks(
              plan.tasks, SyntheticTask{static_cast<std::int64_t>(cpu_us * 1000),
                                        static_cast<std::int64_t>(plan.io_us * 1000)});
          results.push_back({cpu_us, run_sweep("synthetic", describe(plan, cpu_us),
                                               synthetic_sampler(tasks, stop))});
          if (results.back().sweep.interrupted) break;
        }
        break;
    }
  } catch (const std::runtime_error& error) {
    failure = error.what();
  }
  progress.finish();
  std::erase_if(results,
                [](const sweep::TaskSizeSweep& r) { return r.sweep.serial.samples.empty(); });
  const bool interrupted =
      interrupt.interrupted() || std::any_of(results.begin(), results.end(),
                                             [](const auto& r) { return r.sweep.interrupted; });
  if (results.empty()) {
    if (!failure.empty()) {
      print_diagnostic("crew bench: {}\n", failure);
      return 1;
    }
    print_diagnostic("interrupted before the first run finished: nothing to report\n");
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }

  // The verdicts, and what the plot and the last line say: the largest task size's sweep.
  std::vector<sweep::Verdict> verdicts;
  for (const sweep::TaskSizeSweep& r : results) verdicts.push_back(sweep::decide(r.sweep));
  const sweep::Sweep& main_sweep = results.back().sweep;
  const sweep::Verdict& main_verdict = verdicts.back();
  const std::vector<sweep::BreakEven> even =
      plan.job == Job::kSynthetic ? sweep::break_even(results) : std::vector<sweep::BreakEven>{};

  if (plan.json) {
    if (plan.job != Job::kSynthetic) {
      write_stdout(sweep::to_json(main_sweep, main_verdict) + "\n");
    } else {
      nlohmann::ordered_json document = {{"job", "synthetic"},
                                         {"tasks", plan.tasks},
                                         {"io_us", plan.io_us},
                                         {"sizes", nlohmann::ordered_json::array()},
                                         {"break_even", nlohmann::ordered_json::array()}};
      for (std::size_t i = 0; i < results.size(); ++i) {
        document["sizes"].push_back({{"cpu_us", results[i].cpu_us},
                                     {"sweep", nlohmann::ordered_json::parse(sweep::to_json(
                                                   results[i].sweep, verdicts[i]))}});
      }
      for (const sweep::BreakEven& b : even) {
        document["break_even"].push_back(
            {{"engine", b.engine},
             {"cpu_us", b.cpu_us ? nlohmann::ordered_json(*b.cpu_us) : nullptr}});
      }
      write_stdout(json_line(document));
    }
  } else if (plan.csv) {
    for (std::size_t i = 0; i < results.size(); ++i) {
      std::istringstream lines(sweep::to_csv(results[i].sweep));
      std::string line;
      bool header = true;
      while (std::getline(lines, line)) {
        if (plan.job == Job::kSynthetic) {
          if (header && i > 0) {
            header = false;
            continue;
          }
          line = (header ? std::string("cpu_us") : fmt::format("{:g}", results[i].cpu_us)) + "," +
                 line;
        }
        header = false;
        fmt::print("{}\n", line);
      }
    }
  } else {
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (plan.job == Job::kSynthetic) fmt::print("-- {} --\n", results[i].sweep.description);
      fmt::print("{}", table(results[i].sweep));
      if (plan.job == Job::kSynthetic && i + 1 < results.size()) {
        fmt::print("verdict for this size: {}\n\n", verdicts[i].sentence);
      }
    }
    fmt::print("{}", python_table(main_sweep));
    if (!even.empty()) {
      fmt::print(
          "\nBreak-even: the smallest task (µs of CPU) at which each engine beats serial "
          "by 10 %, beyond the noise:\n");
      for (const sweep::BreakEven& b : even) {
        fmt::print("  {:<10} {}\n", b.engine,
                   b.cpu_us ? fmt::format("{:g} µs", *b.cpu_us)
                            : fmt::format("none of the sizes ({}–{} µs)", plan.cpu_us.front(),
                                          plan.cpu_us.back()));
      }
    }
  }
  flush_stdout();

  std::string plot_error;
  if (!plan.plot.empty()) {
    plot_error = draw_plot(main_sweep, main_verdict, plan.plot);
    if (plot_error.empty() && !quiet) fmt::print("\nplot: {}\n", plan.plot);
  }
  // The warnings come before the verdict they qualify, on stderr with every other diagnostic.
  std::fflush(stdout);
  for (const std::string& warning : main_verdict.warnings) {
    print_diagnostic(fmt::format("crew bench: warning: {}\n", warning));
  }
  if (!quiet) {
    fmt::print("\nverdict: {}\n", main_verdict.sentence);
    flush_stdout();
  } else if (plan.csv) {
    print_diagnostic("verdict: {}\n", main_verdict.sentence);
  }
  if (!plot_error.empty()) print_diagnostic("crew bench: {}\n", plot_error);
  if (!failure.empty()) print_diagnostic("crew bench: {}\n", failure);
  if (interrupted) {
    print_diagnostic("interrupted: {} of {} runs done\n", done, total);
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  return !failure.empty() || !plot_error.empty() ? 1 : 0;
}

}  // namespace crew::cli
