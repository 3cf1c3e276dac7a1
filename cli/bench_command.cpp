#include "bench_command.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <crew/errors.hpp>
#include <crew/latency_server.hpp>
#include <crew/process_pool.hpp>
#include <crew/sweep.hpp>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>
#include <crew/worker_count.hpp>
#include <crew/workloads/fetch.hpp>
#include <crew/workloads/primes.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "demo_command.hpp"  // known_prime_sum
#include "json_output.hpp"
#include "primes_command.hpp"
#include "progress_bar.hpp"
#include "serve_child.hpp"
#include "standard_streams.hpp"

extern char** environ;

namespace crew::cli {
namespace {

using Clock = std::chrono::steady_clock;

enum class Job { kCpu, kIo, kSynthetic };

// A sweep estimated to take longer than this needs --yes.
constexpr double kConfirmAboveSeconds = 600;
constexpr std::size_t kMaxRepeat = 100;
constexpr std::size_t kIoDefaultMaxWorkers = 256;
constexpr std::int64_t kMaxUrls = 100'000;
constexpr std::int64_t kMaxTasks = 10'000'000;
// The article's ThreadPoolExecutor(4), for --compare-python on the IO job.
constexpr std::size_t kPythonIoWorkers = 4;

// Thrown out of a sample when Ctrl-C stopped it: the sweep keeps what it had.
struct Interrupted {};

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
  std::size_t repeat = 3;
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
  plan.repeat =
      static_cast<std::size_t>(parse_whole_option(args.repeat, 1, kMaxRepeat, "--repeat"));
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

double estimate_seconds(const BenchPlan& plan) {
  const auto cores = static_cast<double>(plan.cores);
  double total = 0;
  auto add_sweep = [&](double serial_s, double cpu_share) {
    // cpu_share: the part of the serial time that is CPU (divides by min(w, cores)); the rest
    // waits (divides by w).
    total += serial_s;
    for (const std::string& engine : plan.engines) {
      for (const std::size_t w : plan.workers) {
        const double wd = static_cast<double>(w);
        total += serial_s * cpu_share / std::min(wd, cores) + serial_s * (1 - cpu_share) / wd;
        if (engine == "process") total += 0.005 + 0.003 * wd;  // forks and reaping
      }
    }
  };
  switch (plan.job) {
    case Job::kCpu:
      add_sweep(estimate_primes_serial(plan.below), 1.0);
      if (plan.compare_python) {
        // The article's Python, measured here: ~1.3 µs per number in its loop and in Pool(2),
        // ~32 µs in ThreadPoolExecutor.map (a Future per number, all behind the GIL).
        total += static_cast<double>(plan.below) * 35e-6 / static_cast<double>(plan.repeat);
      }
      break;
    case Job::kIo: {
      const double serial =
          static_cast<double>(plan.urls) * std::chrono::duration<double>(plan.latency).count();
      add_sweep(serial, 0.0);
      if (plan.compare_python) total += serial * 1.3 / static_cast<double>(plan.repeat);
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
  return total * static_cast<double>(plan.repeat);
}

// --- the samples --------------------------------------------------------------------------------

// Peak memory of a run: this process's block peak, plus each worker process's own peak.
std::uint64_t peak_memory(const Timing& timing, const std::optional<ProcessPoolStats>& stats) {
  std::uint64_t bytes = timing.peak_rss_bytes;
  if (stats) {
    for (const WorkerRecord& worker : stats->workers) {
      bytes += static_cast<std::uint64_t>(std::max(0L, worker.peak_rss_kib)) * 1024;
    }
  }
  return bytes;
}

sweep::Sample to_sample(const Timing& timing, const std::optional<ProcessPoolStats>& stats) {
  return {.wall_s = std::chrono::duration<double>(timing.wall).count(),
          .cpu_s = std::chrono::duration<double>(timing.cpu()).count(),
          .peak_rss_bytes = peak_memory(timing, stats)};
}

Engine primes_engine(std::string_view engine) {
  if (engine == "thread") return Engine::kThread;
  if (engine == "process") return Engine::kProcess;
  return Engine::kSerial;
}

// The synthetic task: burn cpu_ns of this thread's CPU, then sleep io_ns. Returns 1, so that the
// sum of a run's results counts the tasks that ran.
struct SyntheticTask {
  std::int64_t cpu_ns;
  std::int64_t io_ns;
};

std::int64_t thread_cpu_ns() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

std::int64_t run_synthetic_task(SyntheticTask task) {
  if (task.cpu_ns > 0) {
    const std::int64_t until = thread_cpu_ns() + task.cpu_ns;
    volatile std::uint64_t sink = 0;
    do {
      for (int i = 0; i < 256; ++i) sink = sink + static_cast<std::uint64_t>(i);
    } while (thread_cpu_ns() < until);
  }
  if (task.io_ns > 0) {
    timespec pause{.tv_sec = static_cast<time_t>(task.io_ns / 1'000'000'000),
                   .tv_nsec = static_cast<long>(task.io_ns % 1'000'000'000)};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
  }
  return 1;
}

// Measures one run of `engine` with `workers` on the job.
using Sampler = std::function<sweep::Sample(const std::string& engine, std::size_t workers)>;

Sampler primes_sampler(const BenchPlan& plan, std::stop_token stop,
                       std::optional<std::int64_t>& answer) {
  return [&plan, stop, &answer](const std::string& engine, std::size_t workers) {
    PrimesJob job{.below = plan.below,
                  .engine = primes_engine(engine),
                  .workers = workers,
                  .workers_reason = "crew bench",
                  .chunksize = std::nullopt,
                  .task_timeout = std::nullopt,
                  .max_tasks_per_child = std::nullopt};
    ProgressBar quiet(false, "numbers");
    const PrimesResult result = run_primes(job, stop, quiet);
    if (result.interrupted) throw Interrupted{};
    if (!answer) answer = result.sum;
    if (result.sum != *answer) {
      throw std::runtime_error(fmt::format("wrong answer: {} with {} workers summed {}, serial {}",
                                           engine, workers, result.sum, *answer));
    }
    return to_sample(result.timing, result.process_stats);
  };
}

Sampler fetch_sampler(const std::vector<std::string>& urls, std::stop_token stop) {
  return [&urls, stop](const std::string& engine, std::size_t workers) {
    const workloads::FetchEngine fetch_engine =
        workloads::parse_fetch_engine(engine).value_or(workloads::FetchEngine::kSerial);
    const Stopwatch watch;
    const workloads::FetchRun run =
        workloads::fetch_urls(urls, fetch_engine, workers, {}, {.stop = stop});
    const Timing timing = watch.elapsed();
    // A stop may also show as failed transfers (cut short mid-response): it is still a stop.
    if (run.stopped || stop.stop_requested()) throw Interrupted{};
    for (const workloads::FetchResult& result : run.results) {
      if (!result.ok()) {
        throw std::runtime_error(fmt::format("{} with {} workers: {} failed: {}", engine, workers,
                                             result.url, result.error));
      }
    }
    return to_sample(timing, run.process_stats);
  };
}

Sampler synthetic_sampler(const std::vector<SyntheticTask>& tasks, std::stop_token stop) {
  return [&tasks, stop](const std::string& engine, std::size_t workers) {
    const auto fn = [](SyntheticTask task) { return run_synthetic_task(task); };
    const MapOptions options{.stop = stop};
    std::int64_t done = 0;
    std::optional<ProcessPoolStats> stats;
    const Stopwatch watch;
    try {
      if (engine == "serial") {
        for (const SyntheticTask& task : tasks) {
          if (stop.stop_requested()) throw Interrupted{};
          done += run_synthetic_task(task);
        }
      } else if (engine == "thread") {
        ThreadPool pool({.workers = workers});
        for (const std::int64_t one : pool.map(fn, tasks, options)) done += one;
      } else {
        ProcessPool pool({.workers = workers, .warn_if_threads_running = false});
        for (const std::int64_t one : pool.map(fn, tasks, options)) done += one;
        (void)pool.shutdown();
        stats = pool.stats();
      }
    } catch (const Cancelled&) {
      if (stop.stop_requested()) throw Interrupted{};
      throw;
    }
    const Timing timing = watch.elapsed();
    if (done != static_cast<std::int64_t>(tasks.size())) {
      throw std::runtime_error(fmt::format("{} with {} workers ran {} of {} tasks", engine, workers,
                                           done, tasks.size()));
    }
    return to_sample(timing, stats);
  };
}

// Runs the sweep in rounds (every point once per round), so that a drift of the machine's speed
// spreads over all points instead of landing on one engine. After Ctrl-C, keeps what finished.
sweep::Sweep run_sweep(const BenchPlan& plan, std::string job, std::string description,
                       const Sampler& sample, ProgressBar& progress, std::size_t& done,
                       std::size_t total) {
  sweep::Sweep result;
  result.job = std::move(job);
  result.description = std::move(description);
  result.cores = plan.cores;
  result.repeat = plan.repeat;
  result.serial.engine = "serial";
  for (const std::string& engine : plan.engines) {
    for (const std::size_t w : plan.workers) {
      sweep::Point point;
      point.engine = engine;
      point.workers = w;
      result.points.push_back(std::move(point));
    }
  }
  try {
    for (std::size_t round = 0; round < plan.repeat; ++round) {
      result.serial.samples.push_back(sample("serial", 1));
      progress.update(++done, total);
      for (sweep::Point& point : result.points) {
        point.samples.push_back(sample(point.engine, point.workers));
        progress.update(++done, total);
      }
    }
  } catch (const Interrupted&) {
    result.interrupted = true;
  }
  std::erase_if(result.points, [](const sweep::Point& p) { return p.samples.empty(); });
  if (!result.serial.samples.empty()) {
    sweep::summarize(result.serial, 0);
    const double serial_wall = result.serial.wall_s;
    sweep::summarize(result.serial, serial_wall);
    for (sweep::Point& point : result.points) sweep::summarize(point, serial_wall);
  }
  return result;
}

// --- the article's Python ------------------------------------------------------------------------

std::string python_dir() {
  if (const char* dir = std::getenv("CREW_PYTHON_DIR"); dir != nullptr && *dir != '\0') return dir;
  return CREW_PYTHON_DIR;
}

// Runs python3 with `args`, returns its stdout. Throws: std::runtime_error with its stderr.
std::string run_python(const std::vector<std::string>& args) {
  const char* python_env = std::getenv("CREW_PYTHON");
  const std::string python = python_env != nullptr && *python_env != '\0' ? python_env : "python3";
  std::vector<std::string> argv_text = {python};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // Loopback URLs must not go through a proxy from the environment.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
  env_text.emplace_back("no_proxy=127.0.0.1,localhost,::1");
  env_text.emplace_back("NO_PROXY=127.0.0.1,localhost,::1");
  std::vector<char*> envp;
  for (std::string& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(out[1]);
  ::close(err[1]);
  if (spawned != 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error(fmt::format("cannot run {}: {}", python, std::strerror(spawned)));
  }
  // Python prints one short line on stdout; stderr only on failure. Read stdout, then stderr.
  auto read_all = [](int fd) {
    std::string text;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
  };
  const std::string text = read_all(out[0]);
  const std::string errors = read_all(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(fmt::format("the article's Python failed: {}", errors));
  }
  return text;
}

const sweep::Point* find_point(const sweep::Sweep& s, std::string_view engine, std::size_t w) {
  if (engine == "serial") return &s.serial;
  for (const sweep::Point& point : s.points) {
    if (point.engine == engine && point.workers == w) return &point;
  }
  return nullptr;
}

sweep::PythonComparison compare(const sweep::Sweep& s, std::string what, std::size_t workers,
                                double wall_s, std::string engine) {
  const sweep::Point* point = find_point(s, engine, workers);
  const std::size_t crew_workers = engine == "serial" ? 1 : workers;
  return {.what = std::move(what),
          .workers = workers,
          .wall_s = wall_s,
          .crew_engine = std::move(engine),
          .crew_workers = crew_workers,
          .crew_wall_s = point != nullptr ? point->wall_s : 0};
}

void compare_python_cpu(const BenchPlan& plan, sweep::Sweep& s) {
  const std::string out = run_python({python_dir() + "/article_primes.py",
                                      std::to_string(plan.below), std::to_string(plan.cores)});
  const auto result = nlohmann::json::parse(out);
  const std::size_t w = plan.cores;
  s.python.push_back(
      compare(s, "Python for loop", 1, result.at("serial_s").get<double>(), "serial"));
  s.python.push_back(compare(s, fmt::format("ThreadPoolExecutor({})", w), w,
                             result.at("threads_s").get<double>(), "thread"));
  s.python.push_back(compare(s, fmt::format("multiprocessing.Pool({})", w), w,
                             result.at("pool_s").get<double>(), "process"));
}

void compare_python_io(const std::vector<std::string>& urls, sweep::Sweep& s) {
  char path[] = "/tmp/crew-bench-urls-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("cannot write a temporary URL list");
  ::close(fd);
  {
    std::ofstream file(path);
    for (const std::string& url : urls) file << url << '\n';
  }
  std::string out;
  try {
    out = run_python({python_dir() + "/article_fetch.py", path, std::to_string(kPythonIoWorkers)});
  } catch (...) {
    ::unlink(path);
    throw;
  }
  ::unlink(path);
  const auto result = nlohmann::json::parse(out);
  s.python.push_back(
      compare(s, "Python urlopen loop", 1, result.at("serial_s").get<double>(), "serial"));
  s.python.push_back(compare(s, fmt::format("ThreadPoolExecutor({})", kPythonIoWorkers),
                             kPythonIoWorkers, result.at("threads_s").get<double>(), "thread"));
}

// --- output ------------------------------------------------------------------------------------

std::string seconds_text(double s) {
  return format_duration(std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9)));
}

std::string speedup_text(double x) {
  return x >= 10 ? fmt::format("{:.1f}×", x) : fmt::format("{:.2f}×", x);
}

std::string table(const sweep::Sweep& s) {
  std::string out =
      fmt::format("{:<11} {:>7} {:>10} {:>8} {:>9} {:>10} {:>10} {:>10}\n", "engine", "workers",
                  "wall", "spread", "speed-up", "efficiency", "CPU", "peak RSS");
  auto row = [&out](const sweep::Point& p) {
    const double spread = p.wall_s > 0 ? (p.wall_max_s - p.wall_min_s) / 2 / p.wall_s * 100 : 0;
    out += fmt::format("{:<11} {:>7} {:>10} {:>8} {:>9} {:>10} {:>10} {:>10}\n", p.engine,
                       p.workers, seconds_text(p.wall_s), fmt::format("±{:.1f}%", spread),
                       speedup_text(p.speedup), fmt::format("{:.0f} %", p.efficiency * 100),
                       seconds_text(p.cpu_s),
                       format_bytes(static_cast<std::int64_t>(p.peak_rss_bytes)));
  };
  row(s.serial);
  for (const sweep::Point& p : s.points) row(p);
  return out;
}

std::string python_table(const sweep::Sweep& s) {
  if (s.python.empty()) return {};
  std::string out = "\nThe article's Python, same job, same run:\n";
  for (const sweep::PythonComparison& c : s.python) {
    const std::string crew = c.crew_engine == "serial"
                                 ? "crew serial"
                                 : fmt::format("crew {} ×{}", c.crew_engine, c.crew_workers);
    out += fmt::format("  {:<26} {:>10}   {:<18} {:>10}   {}\n", c.what, seconds_text(c.wall_s),
                       crew, c.crew_wall_s > 0 ? seconds_text(c.crew_wall_s) : "-",
                       c.crew_wall_s > 0
                           ? fmt::format("crew {} faster", speedup_text(c.crew_speedup()))
                           : "not measured (engine left out)");
  }
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
  if (!file) throw std::runtime_error(fmt::format("cannot write {}", path));
}

// Draws the plot with gnuplot. Returns an error text, or empty on success.
std::string draw_plot(const sweep::Sweep& s, const sweep::Verdict& verdict,
                      const std::string& png) {
  char path[] = "/tmp/crew-bench-plot-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return "cannot write a temporary gnuplot script";
  ::close(fd);
  write_file(path, sweep::gnuplot_script(s, verdict, png));
  std::vector<std::string> argv_text = {"gnuplot", path};
  std::vector<char*> argv;
  for (std::string& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  std::string error;
  if (spawned != 0) {
    error = fmt::format("--plot needs gnuplot ({}); install gnuplot-nox", std::strerror(spawned));
  } else {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      error = fmt::format("gnuplot failed to draw {}", png);
    }
  }
  ::unlink(path);
  return error;
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
      "Exit codes: 0 done, 1 a run failed (wrong answer, a URL failed, gnuplot missing), 2 usage\n"
      "error or a sweep estimated over 10 minutes without --yes, 130 interrupted (the points\n"
      "measured so far are printed). docs/cli.md describes the JSON and CSV.");
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
      ->add_option("--repeat", args.repeat,
                   "Runs per point; the table shows medians and the spread. Default: 3.")
      ->type_name("R");
  command->add_flag("--json", args.json, "Print one JSON object instead of the table.");
  command->add_flag("--csv", args.csv, "Print the points as CSV instead of the table.");
  command->add_option("--plot", args.plot, "Draw speed-up against workers into FILE.png (gnuplot).")
      ->type_name("FILE");
  command->add_flag("--compare-python", args.compare_python,
                    "cpu, io: also run the article's own Python on the same job (python3).");
  command->add_flag("--yes", args.yes, "Run a sweep estimated to take over 10 minutes.");
  return command;
}

int run_bench_command(const BenchArgs& args, const InterruptWatcher& interrupt) {
  const BenchPlan plan = resolve(args);
  const double estimate = estimate_seconds(plan);
  if (estimate > kConfirmAboveSeconds && !plan.yes) {
    throw UsageError(fmt::format(
        "this sweep would take about {} ({} engines × {} worker counts × {} repeats besides "
        "serial); add --yes to run it, or lower --repeat, --max-workers or the job's size",
        seconds_text(estimate), plan.engines.size(), plan.workers.size(), plan.repeat));
  }
  const bool quiet = plan.json || plan.csv;
  if (!quiet) {
    fmt::print("crew bench {}: {}; {} cores; {} run{} per point (estimate: {})\n\n",
               job_name(plan.job), describe(plan, plan.cpu_us.empty() ? 0 : plan.cpu_us.front()),
               plan.cores, plan.repeat, plan.repeat == 1 ? "" : "s", seconds_text(estimate));
    flush_stdout();
  }

  const std::stop_token stop = interrupt.stop_token();
  ProgressBar progress(ProgressBar::stderr_is_terminal(), "runs");
  const std::size_t sweeps = plan.job == Job::kSynthetic ? plan.cpu_us.size() : 1;
  const std::size_t total = sweeps * plan.repeat * (1 + plan.engines.size() * plan.workers.size());
  std::size_t done = 0;

  std::vector<sweep::TaskSizeSweep> results;
  std::vector<std::string> urls;
  std::string failure;
  try {
    switch (plan.job) {
      case Job::kCpu: {
        std::optional<std::int64_t> answer;
        results.push_back(
            {0, run_sweep(plan, "cpu", describe(plan), primes_sampler(plan, stop, answer), progress,
                          done, total)});
        if (answer) {
          if (const auto known = known_prime_sum(plan.below); known && *known != *answer) {
            throw std::runtime_error(
                fmt::format("wrong answer: {} where the known sum is {}", *answer, *known));
          }
        }
        if (plan.compare_python && !results.back().sweep.interrupted) {
          compare_python_cpu(plan, results.back().sweep);
        }
        break;
      }
      case Job::kIo: {
        const workloads::FdBudget budget = workloads::reserve_file_descriptors(
            plan.workers.back(), workloads::fds_per_transfer(workloads::FetchEngine::kThread));
        if (!budget.warning.empty()) print_diagnostic("crew bench: warning: {}\n", budget.warning);
        ServeChild server(plan.latency, plan.body_bytes);
        urls = workloads::local_urls(server.port(), plan.urls);
        results.push_back({0, run_sweep(plan, "io", describe(plan), fetch_sampler(urls, stop),
                                        progress, done, total)});
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
          results.push_back(
              {cpu_us, run_sweep(plan, "synthetic", describe(plan, cpu_us),
                                 synthetic_sampler(tasks, stop), progress, done, total)});
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
          "by 10 %:\n");
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
