// Primes with the article's own Python: bench/python/pool_map_primes.py runs
// `with Pool(W) as p: answer = sum(p.map(is_prime, range(N)))` and prints its wall times, which
// this benchmark reports (manual time), so crew's ratio to Python comes from the same run.
//
//   BM_PythonPool_Primes   the iteration's time is the script's `seconds_with_start`: the whole
//                          `with Pool(W)` block (workers' start, map, sum, the pool's exit), as
//                          BM_CrewProcessPool_PrimesWithStart; the counter `map_s` is the map and
//                          sum alone on running workers, as BM_CrewProcessPool_Primes. The
//                          interpreter's own start is not counted.
//
// python3 is looked up on PATH, or taken from CREW_BENCH_PYTHON; without it the benchmark fails
// with an error that says so, and every other benchmark runs. Only N = 1e6 (smoke: 1e4): Python
// needs seconds per million.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bench_config.hpp"

extern char** environ;

namespace {

// What the script printed.
struct PythonRun {
  std::int64_t sum = 0;
  double seconds_with_start = 0;
  double seconds_map = 0;
};

// The number after `"key": ` in one line of JSON, or nullopt.
std::optional<double> json_number(const std::string& json, const std::string& key) {
  const std::string quoted = "\"" + key + "\":";
  const std::size_t at = json.find(quoted);
  if (at == std::string::npos) return std::nullopt;
  const char* begin = json.c_str() + at + quoted.size();
  char* end = nullptr;
  const double value = std::strtod(begin, &end);
  if (end == begin) return std::nullopt;
  return value;
}

// Runs the script once and parses its line of JSON; nullopt, with `error` saying why, when
// python3 is missing, the script failed, or it printed no result.
std::optional<PythonRun> run_script(std::int64_t n, int workers, std::string& error) {
  const char* chosen = std::getenv("CREW_BENCH_PYTHON");
  const std::string python = chosen != nullptr && *chosen != '\0' ? chosen : "python3";
  const std::string script = std::string(CREW_BENCH_PYTHON_DIR) + "/pool_map_primes.py";
  const std::string n_text = std::to_string(n);
  const std::string workers_text = std::to_string(workers);
  std::vector<char*> argv = {const_cast<char*>(python.c_str()), const_cast<char*>(script.c_str()),
                             const_cast<char*>(n_text.c_str()),
                             const_cast<char*>(workers_text.c_str()), nullptr};

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return std::nullopt;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, python.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(out[0]);
    error = python + " not found or not runnable (" + std::strerror(spawned) +
            "): the article's Pool.map is not timed in this run (set CREW_BENCH_PYTHON)";
    return std::nullopt;
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(out[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = script + " failed (status " + std::to_string(status) + ")";
    return std::nullopt;
  }
  const auto sum = json_number(text, "sum");
  const auto with_start = json_number(text, "seconds_with_start");
  const auto map = json_number(text, "seconds_map");
  if (!sum || !with_start || !map) {
    error = script + " printed no result: " + text;
    return std::nullopt;
  }
  return PythonRun{.sum = static_cast<std::int64_t>(*sum),
                   .seconds_with_start = *with_start,
                   .seconds_map = *map};
}

void BM_PythonPool_Primes(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto workers = static_cast<int>(state.range(1));
  double map_total_s = 0;
  std::int64_t sum = 0;
  for (auto _ : state) {
    std::string error;
    const std::optional<PythonRun> run = run_script(n, workers, error);
    if (!run) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.SetIterationTime(run->seconds_with_start);
    map_total_s += run->seconds_map;
    sum = run->sum;
  }
  if (sum != crew_bench::expected_prime_sum(n)) state.SkipWithError("wrong sum of primes");
  state.counters["map_s"] = benchmark::Counter(map_total_s, benchmark::Counter::kAvgIterations);
  crew_bench::report_per(state, static_cast<std::size_t>(n));
}

BENCHMARK(BM_PythonPool_Primes)
    ->ArgNames({"n", "workers"})
    ->Args({crew_bench::primes_small_n(), crew_bench::kThreads})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

}  // namespace
