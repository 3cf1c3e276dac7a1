#include "demo_command.hpp"

#include <fmt/format.h>
#include <crew/sweep_runner.hpp>
#include <crew/sweep_statistics.hpp>
#include <crew/timing.hpp>
#include <crew/worker_count.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_samplers.hpp"
#include "fetch_command.hpp"
#include "primes_command.hpp"
#include "progress_bar.hpp"
#include "standard_streams.hpp"

namespace crew::cli {
namespace {

constexpr std::size_t kWrapColumns = 100;

// Words of `text` on lines of at most kWrapColumns characters (a longer word gets its own line).
std::string wrap(const std::string& text) {
  std::istringstream words(text);
  std::string out;
  std::string line;
  std::string word;
  while (words >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > kWrapColumns) {
      out += line + '\n';
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += line + '\n';
  return out;
}

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

double speedup(const Timing& serial, const Timing& pool) {
  return pool.wall.count() > 0 ? seconds(serial.wall) / seconds(pool.wall) : 0;
}

// After the three runs shown, each engine runs again until its mean is known to ±2 % (or a
// second of runs is spent): the speed-ups and every comparison below come from these, so that
// what the demo explains is what was measured beyond the noise, not one run's luck.
const sweep::RunPolicy kRepeatPolicy{.warmup = 0,
                                     .min_runs = 3,
                                     .max_runs = 10,
                                     .target_rse = 0.02,
                                     .max_time = std::chrono::seconds(1)};

struct Measured {
  sweep::Sweep sweep;
  const sweep::Point* thread = nullptr;
  const sweep::Point* process = nullptr;
  sweep::Statistics serial_cpu;
  sweep::Statistics thread_cpu;
  std::vector<std::string> warnings;
  bool busy = false;
};

sweep::Statistics cpu_statistics(const sweep::Point& p) {
  std::vector<double> cpu;
  for (const sweep::Sample& s : p.samples) cpu.push_back(s.cpu_s);
  return sweep::describe(cpu);
}

std::string interval_text(const sweep::Point& p) {
  if (!p.speedup_interval.interval_known()) return "spread unknown";
  return fmt::format("95 % CI {:.2f}–{:.2f}", *p.speedup_interval.low, *p.speedup_interval.high);
}

// The explanation under the speed-ups, fitted to what this run measured: a claim appears only
// when the repeated runs carry it (Welch's t-test at 95 %), and none when the machine was busy.
std::string why(std::size_t workers, std::int64_t below, const Measured& m) {
  const sweep::Point& thread = *m.thread;
  const sweep::Point& process = *m.process;
  std::string text =
      "Why: the article warns that Python threads make this job slower, not faster: the GIL lets "
      "only one thread run Python code at a time, so only processes helped there. C++ has no "
      "GIL: each worker thread runs is_prime on its own CPU at the same time, so threads give the "
      "speed-up that processes gave in Python, without starting processes or pickling " +
      group_digits(below) +
      " numbers and results between them. The work stays the same while the wall time divides by "
      "the number of CPUs: CPU/wall above is that parallelism.";
  if (workers == 1) {
    text +=
        " Here this process may use only 1 CPU, so no pool can beat the loop; run it where more "
        "CPUs are free to see the speed-up.";
  } else if (m.busy) {
    text +=
        " Here other programs were using the CPUs (see the warning above), so this run's figures "
        "cannot say more than that; run it on a quiet machine.";
  } else {
    const double cpu_ratio = m.serial_cpu.mean > 0 ? m.thread_cpu.mean / m.serial_cpu.mean : 1;
    if (cpu_ratio > 1.05 &&
        sweep::compare(m.serial_cpu, m.thread_cpu) == sweep::Difference::kFaster) {
      text += fmt::format(
          " Here the thread runs used {:.0f}% more CPU than the loop for the same numbers: two "
          "busy CPUs can each run slower than one alone (hyper-threads of one core, a shared "
          "clock), and starting the pool counts on a short job. That is why the speed-up is below "
          "CPU/wall.",
          (cpu_ratio - 1) * 100);
    }
    // Only an interval that lies wholly below 80 % of the ideal says the parallelism fell short.
    if (thread.speedup_interval.interval_known() &&
        *thread.speedup_interval.high < 0.8 * static_cast<double>(workers)) {
      text +=
          " The speed-up stays below the worker count beyond the noise: the job is too short for "
          "the pool's start to vanish, or the CPUs are not all free. Try `crew demo --below 1e7`.";
    }
  }
  std::string out = wrap(text) + "\n";
  std::string processes =
      "The process run is the article's own answer, multiprocessing.Pool, in C++: forked worker "
      "processes, the numbers and the results crossing between processes in chunks, the workers' "
      "CPU counted in the Workers' CPU line once they are reaped.";
  const double process_vs_thread =
      process.wall_s > 0 && thread.wall_s > 0 ? process.wall_s / thread.wall_s : 1;
  if (!m.busy) {
    switch (sweep::compare(process.wall, thread.wall)) {
      case sweep::Difference::kWithinNoise:
        processes += fmt::format(
            " Here its wall time was within the noise of the thread runs' ({:.0f}% of it over {} "
            "and {} runs): chunks of numbers cost little to send next to testing them, so "
            "processes are as fast as threads on this job.",
            process_vs_thread * 100, process.wall.runs, thread.wall.runs);
        break;
      case sweep::Difference::kSlower:
        processes += fmt::format(
            " Here it took {:.2f}x the thread runs' wall time, beyond the noise: forking the "
            "workers, sending the numbers and results between processes and reaping the workers "
            "cost what threads sharing memory never pay; the shorter the job, the more that shows "
            "(try `crew demo --below 1e7`).",
            process_vs_thread);
        break;
      case sweep::Difference::kFaster:
        processes += fmt::format(
            " Here it was even faster than the thread runs ({:.0f}% of their wall time, beyond "
            "the noise): each worker process has its own memory, so nothing is shared between "
            "them; either way, processes cost little on this job.",
            process_vs_thread * 100);
        break;
      case sweep::Difference::kUnknown:
        break;
    }
  }
  processes +=
      " In C++ processes are not for speed but for what threads cannot give: code that is not "
      "thread-safe, a crash that fails one task instead of the program, and a hard timeout.";
  return out + wrap(processes);
}

// Runs serial, thread and process again, quietly and in rounds, as kRepeatPolicy says. nullopt
// when interrupted.
std::optional<Measured> measure_again(std::int64_t below, std::size_t workers,
                                      const InterruptWatcher& interrupt) {
  const std::stop_token stop = interrupt.stop_token();
  std::optional<std::int64_t> answer;
  const sweep::Sampler sample = primes_sampler(below, stop, answer);
  ProgressBar progress(ProgressBar::stderr_is_terminal(), "runs");
  Measured m;
  m.sweep = sweep::run_sweep({.job = "cpu",
                              .description = "the demo's primes",
                              .cores = workers,
                              .engines = {"thread", "process"},
                              .workers = {workers},
                              .policy = kRepeatPolicy,
                              .cpu_bound_job = true},
                             sample, stop, [&progress](std::size_t done, std::size_t expected) {
                               progress.update(done, expected);
                             });
  progress.finish();
  if (m.sweep.interrupted || m.sweep.points.size() != 2) return std::nullopt;
  m.thread = &m.sweep.points[0];
  m.process = &m.sweep.points[1];
  m.serial_cpu = cpu_statistics(m.sweep.serial);
  m.thread_cpu = cpu_statistics(*m.thread);
  const sweep::Verdict verdict = sweep::decide(m.sweep);
  m.warnings = verdict.warnings;
  m.busy = verdict.cpu_per_wall < sweep::kBusySerialCpuPerWall ||
           m.sweep.other_load >= sweep::kBusyOtherLoad * static_cast<double>(workers);
  return m;
}

struct EngineRun {
  PrimesJob job;
  PrimesResult result;
};

EngineRun run_engine(PrimesJob job, std::string_view header, const InterruptWatcher& interrupt) {
  fmt::print("== {} ==\n", header);
  flush_stdout();
  ProgressBar progress(ProgressBar::stderr_is_terminal(), "numbers");
  PrimesResult result = run_primes(job, interrupt.stop_token(), progress);
  if (!result.interrupted) {
    fmt::print("sum of primes below {} = {}\n{}\n{}", group_digits(job.below),
               group_digits(result.sum), describe_job(job), format_timing(result.timing));
    flush_stdout();
  }
  return {std::move(job), result};
}

int interrupted_exit(const EngineRun& run, const InterruptWatcher& interrupt) {
  print_diagnostic("interrupted: {} of {} numbers checked on {}\n",
                   group_digits(run.result.checked), group_digits(run.job.below),
                   engine_name(run.job.engine));
  return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
}

// The article's IO job: 13 URLs at 200 ms, serial then ThreadPoolExecutor(4).
constexpr std::size_t kIoUrls = 13;
constexpr std::size_t kIoWorkers = 4;
constexpr std::chrono::milliseconds kIoLatency{200};
constexpr std::uint64_t kIoBodyBytes = 50 * 1024;

struct FetchEngineRun {
  FetchJob job;
  FetchOutcome outcome;
};

FetchEngineRun run_fetch_engine(FetchJob job, std::string_view header,
                                const InterruptWatcher& interrupt) {
  fmt::print("== {} ==\n", header);
  flush_stdout();
  ProgressBar progress(ProgressBar::stderr_is_terminal(), "URLs");
  FetchOutcome outcome = run_fetch(job, interrupt.stop_token(), progress);
  if (!outcome.interrupted) {
    fmt::print("{}\n{}\n{}", describe_fetch_outcome(job, outcome), describe_fetch_job(job),
               format_timing(outcome.timing));
    for (const workloads::FetchResult& result : outcome.run.results) {
      if (!result.ok()) fmt::print("  failed: {}: {}\n", result.url, result.error);
    }
    flush_stdout();
  }
  return {std::move(job), std::move(outcome)};
}

// Part two of the demo. Returns the exit code: 0, 1 when a URL failed, 128 + signal.
int run_io_demo(const InterruptWatcher& interrupt) {
  LatencyServer server({.latency = kIoLatency, .body_bytes = kIoBodyBytes});
  server.start();
  FetchJob job;
  job.urls = workloads::local_urls(server.port(), kIoUrls);
  job.local = LocalServerSpec{.count = kIoUrls, .latency = kIoLatency, .body_bytes = kIoBodyBytes};
  fmt::print(
      "{}\n",
      wrap(fmt::format("crew demo, part 2: the article's IO job, its {} URLs fetched from a server "
                       "in this process that waits {} before each answer ({} bodies), like a "
                       "distant web server.",
                       kIoUrls, format_duration(kIoLatency),
                       format_bytes(static_cast<std::int64_t>(kIoBodyBytes)))));

  FetchJob serial_job = job;
  serial_job.engine = workloads::FetchEngine::kSerial;
  serial_job.workers = 1;
  serial_job.workers_reason = "one URL at a time on the calling thread, no pool";
  const FetchEngineRun serial =
      run_fetch_engine(serial_job, "serial: for url in urls: fetch(url)", interrupt);
  if (serial.outcome.interrupted) {
    print_diagnostic("interrupted during the serial fetch\n");
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  fmt::print("\n");
  FetchJob thread_job = job;
  thread_job.engine = workloads::FetchEngine::kThread;
  thread_job.workers = kIoWorkers;
  thread_job.workers_reason = "the article's ThreadPoolExecutor(4)";
  const FetchEngineRun thread = run_fetch_engine(
      thread_job, fmt::format("thread: ThreadPool({}).map(fetch, urls)", kIoWorkers), interrupt);
  if (thread.outcome.interrupted) {
    print_diagnostic("interrupted during the thread fetch\n");
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  fmt::print("\n");
  if (serial.outcome.failed != 0 || thread.outcome.failed != 0) {
    flush_stdout();
    print_diagnostic("crew demo: {} URLs failed (serial {}, thread {})\n",
                     serial.outcome.failed + thread.outcome.failed, serial.outcome.failed,
                     thread.outcome.failed);
    return 1;
  }
  const double ratio = speedup(serial.outcome.timing, thread.outcome.timing);
  const std::size_t rounds = (kIoUrls + kIoWorkers - 1) / kIoWorkers;
  fmt::print(
      "speed-up: thread {:.2f}x over serial with {} workers (ideal {:.2f}x: {} URLs in {} "
      "rounds of {})\n\n",
      ratio, kIoWorkers, static_cast<double>(kIoUrls) / static_cast<double>(rounds), kIoUrls,
      rounds, format_duration(kIoLatency));
  const std::string text = fmt::format(
      "Why: here threads help in Python too, as the article shows: a thread that waits for the "
      "network releases the GIL. The wait is the job, not the CPU: {} URLs x {} is {} one by one, "
      "and {} workers wait {} rounds at once, so {} is the floor, while the CPU used stays at "
      "milliseconds. crew's threads each reuse one libcurl handle, so the connection opened for "
      "the first URL serves the next. For thousands of URLs one thread is enough: `crew fetch "
      "--local 2000 --latency 100ms --body 5KiB --engine event-loop --workers 500` runs them on "
      "one "
      "curl multi handle.",
      kIoUrls, format_duration(kIoLatency), format_duration(kIoLatency * kIoUrls), kIoWorkers,
      rounds, format_duration(kIoLatency * rounds));
  fmt::print("{}", wrap(text));
  flush_stdout();
  return 0;
}

}  // namespace

std::optional<std::int64_t> known_prime_sum(std::int64_t below) {
  switch (below) {
    case 10:
      return 17;
    case 100:
      return 1060;
    case 1'000'000:
      return 37'550'402'023;
    case 10'000'000:
      return 3'203'324'994'356;
    default:
      return std::nullopt;
  }
}

CLI::App* add_demo_command(CLI::App& app, DemoArgs& args) {
  CLI::App* command = app.add_subcommand(
      "demo",
      "The article's two jobs. CPU: the primes sum on the serial loop, a ThreadPool and a\n"
      "ProcessPool with the default workers: %%time blocks, speed-ups, and why C++ threads\n"
      "speed up what Python threads slowed down. IO: 13 URLs from a local server at 200 ms,\n"
      "one by one and on 4 threads. `make demo` runs it.");
  command->footer(
      "Exit codes: 0 all answers right, 1 a wrong answer (the engines disagree, or miss the\n"
      "known sum for N = 10, 100, 1e6 or 1e7) or a URL failed, 2 usage error, 130 interrupted.");
  command
      ->add_option("--below", args.below,
                   "Sum the primes below N: 0 to 1e10, as digits or in e-notation (1e7).\n"
                   "Default: 1000000, the article's N.")
      ->type_name("N");
  return command;
}

int run_demo_command(const DemoArgs& args, const InterruptWatcher& interrupt) {
  const std::int64_t below = parse_below(args.below);
  const WorkerCount workers = default_worker_count();
  const std::size_t worker_count = workers.count;

  fmt::print(
      "crew demo, part 1: the article's CPU job, sum(is_prime(i) for i in range({})), run three "
      "times.\n\n",
      below);
  const EngineRun serial = run_engine({.below = below,
                                       .engine = Engine::kSerial,
                                       .workers = 1,
                                       .workers_reason = "one loop on the calling thread, no pool",
                                       .chunksize = std::nullopt,
                                       .task_timeout = std::nullopt,
                                       .max_tasks_per_child = std::nullopt},
                                      "serial: the article's for loop", interrupt);
  if (serial.result.interrupted) return interrupted_exit(serial, interrupt);
  fmt::print("\n");

  const EngineRun thread = run_engine(
      {.below = below,
       .engine = Engine::kThread,
       .workers = worker_count,
       .workers_reason = workers.reason,
       .chunksize = std::nullopt,
       .task_timeout = std::nullopt,
       .max_tasks_per_child = std::nullopt},
      fmt::format("thread: ThreadPool({}).imap(is_prime, range({}))", worker_count, below),
      interrupt);
  if (thread.result.interrupted) return interrupted_exit(thread, interrupt);
  fmt::print("\n");

  const EngineRun process = run_engine(
      {.below = below,
       .engine = Engine::kProcess,
       .workers = worker_count,
       .workers_reason = workers.reason,
       .chunksize = std::nullopt,
       .task_timeout = std::nullopt,
       .max_tasks_per_child = std::nullopt},
      fmt::format("process: ProcessPool({}).imap(is_prime, range({}))", worker_count, below),
      interrupt);
  if (process.result.interrupted) return interrupted_exit(process, interrupt);
  fmt::print("\n");

  const std::int64_t serial_sum = serial.result.sum;
  const std::int64_t thread_sum = thread.result.sum;
  const std::int64_t process_sum = process.result.sum;
  const std::optional<std::int64_t> known = known_prime_sum(below);
  if (serial_sum != thread_sum || serial_sum != process_sum || (known && serial_sum != *known)) {
    flush_stdout();
    print_diagnostic("crew demo: WRONG ANSWER: serial {}, thread {}, process {}{}\n", serial_sum,
                     thread_sum, process_sum,
                     known ? fmt::format(", known {}", *known) : std::string());
    return 1;
  }
  fmt::print("all three engines agree: {}{}.\n", group_digits(serial_sum),
             known ? ", the known sum of the primes below " + group_digits(below) : "");

  fmt::print("\nEach engine again, quietly, until its mean is known to ±{:g} % (or {} of runs):\n",
             kRepeatPolicy.target_rse * 100,
             format_duration(
                 std::chrono::duration_cast<std::chrono::nanoseconds>(kRepeatPolicy.max_time)));
  std::fflush(stdout);
  const std::optional<Measured> measured = measure_again(below, worker_count, interrupt);
  if (!measured) {
    print_diagnostic("interrupted while repeating the runs\n");
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  const sweep::Point& serial_point = measured->sweep.serial;
  fmt::print("  serial  {} ± {:.1f} % over {} runs, CPU/wall {:.2f}\n",
             format_duration(
                 std::chrono::nanoseconds(static_cast<std::int64_t>(serial_point.wall_s * 1e9))),
             serial_point.wall_s > 0 ? serial_point.wall.stddev / serial_point.wall_s * 100 : 0.0,
             serial_point.wall.runs,
             serial_point.wall_s > 0 ? serial_point.cpu_s / serial_point.wall_s : 0.0);
  for (const sweep::Point* point : {measured->thread, measured->process}) {
    // Efficiency above 100 % is noise (a slowed serial run), never a finding.
    const std::string efficiency =
        point->efficiency_is_noise()
            ? fmt::format("efficiency {:.0f}%: above 100% is noise, not a finding",
                          point->efficiency * 100)
            : fmt::format("efficiency {:.0f}%", point->efficiency * 100);
    fmt::print("speed-up: {} {:.2f}x over serial with {} worker{} ({}; {})\n", point->engine,
               point->speedup, worker_count, worker_count == 1 ? "" : "s", interval_text(*point),
               efficiency);
  }
  for (const std::string& warning : measured->warnings) {
    fmt::print("{}", wrap("Warning: " + warning + "."));
  }
  fmt::print("\n{}", why(worker_count, below, *measured));
  fmt::print("\n");
  flush_stdout();
  return run_io_demo(interrupt);
}

}  // namespace crew::cli
