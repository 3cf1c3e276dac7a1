// The peer of BM_Fetch_Many: the curl command's own event loop, `curl --parallel --parallel-max C`,
// on the same 2,000 URLs × 100 ms × 5 KiB of a loopback `crew serve` (started once per benchmark
// run, outside the timed region).
//
//   BM_CurlParallel_Many/concurrency:C   curl --parallel --parallel-max C --silent --show-error
//                                        --config FILE --write-out '%{http_code}
//                                        %{size_download}\n' where FILE holds `url = …` and `output
//                                        = "/dev/null"` per URL (one command line could not hold
//                                        2,000 URLs).
//
// The time is manual: from posix_spawn to the reaping of curl, so curl's own start (a few ms) is
// in it; cpu_ms is curl's user + sys time (wait4). The run is checked outside the timed region:
// exit status 0, one "200 <body bytes>" line per URL, and one request per URL at the server.
// curl is looked up on PATH, or taken from CREW_BENCH_CURL; without it the benchmark fails with an
// error saying so, and every other benchmark runs.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench_config.hpp"
#include "crew/workloads/fetch.hpp"
#include "fetch/serve_process.hpp"

extern char** environ;

namespace {

// A temporary file, removed when this goes.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/crew-bench-curl-XXXXXX";
    const int fd = ::mkstemp(path_.data());
    if (fd < 0) {
      path_.clear();
      return;
    }
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) break;
      done += static_cast<std::size_t>(wrote);
    }
    ::close(fd);
    if (done != text.size()) {
      ::unlink(path_.c_str());
      path_.clear();
    }
  }
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  // Empty when the file could not be written.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

struct CurlRun {
  std::string error;  // empty when curl ran and exited 0
  std::string out;
  double wall_s = 0;
  double cpu_s = 0;
};

CurlRun run_curl(const std::string& curl, const std::vector<std::string>& args) {
  CurlRun result;
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  const int err = ::memfd_create("crew-bench-curl-stderr", MFD_CLOEXEC);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (err >= 0) posix_spawn_file_actions_adddup2(&actions, err, STDERR_FILENO);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, curl.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(out[0]);
    if (err >= 0) ::close(err);
    result.error = curl + " not found or not runnable (" + std::strerror(spawned) +
                   "): curl --parallel is not timed in this run (set CREW_BENCH_CURL)";
    return result;
  }
  char buffer[16384];
  for (;;) {
    const ssize_t got = ::read(out[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.out.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(out[0]);
  int status = 0;
  rusage usage{};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  result.cpu_s = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string text;
    if (err >= 0 && ::lseek(err, 0, SEEK_SET) == 0) {
      const ssize_t got = ::read(err, buffer, 512);
      if (got > 0) text.assign(buffer, static_cast<std::size_t>(got));
    }
    result.error = curl + " failed (status " + std::to_string(status) + "): " + text;
  }
  if (err >= 0) ::close(err);
  return result;
}

void BM_CurlParallel_Many(benchmark::State& state) {
  const auto concurrency = static_cast<std::size_t>(state.range(0));
  const std::size_t count = crew_bench::fetch_many_urls();
  const int latency_ms = crew_bench::fetch_many_latency_ms();
  const std::uint64_t body_bytes = crew_bench::kFetchManyBodyBytes;
  const char* chosen = std::getenv("CREW_BENCH_CURL");
  const std::string curl = chosen != nullptr && *chosen != '\0' ? chosen : "curl";

  std::unique_ptr<crew_bench::ServeProcess> server;
  std::vector<std::string> urls;
  try {
    server = std::make_unique<crew_bench::ServeProcess>(std::to_string(latency_ms) + "ms",
                                                        std::to_string(body_bytes));
    urls = crew::workloads::local_urls(server->port(), count);
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
    return;
  }
  std::string config;
  for (const std::string& url : urls) config += "url = \"" + url + "\"\noutput = \"/dev/null\"\n";
  const TempFile config_file(config);
  if (config_file.path().empty()) {
    state.SkipWithError("cannot write curl's config file in TMPDIR or /tmp");
    return;
  }
  const std::vector<std::string> args = {curl,
                                         "--parallel",
                                         "--parallel-max",
                                         std::to_string(concurrency),
                                         "--silent",
                                         "--show-error",
                                         "--config",
                                         config_file.path(),
                                         "--write-out",
                                         "%{http_code} %{size_download}\\n"};
  const std::string expected_line = "200 " + std::to_string(body_bytes);
  const double ideal_s =
      static_cast<double>((count + concurrency - 1) / concurrency) * latency_ms / 1000.0;

  double wall_s = 0;
  double cpu_s = 0;
  double connections = 0;
  double server_cpu_s = 0;
  std::uint64_t server_peak = 0;
  for (auto _ : state) {
    crew_bench::ServeStats before;
    try {
      before = server->stats();
      server_cpu_s -= server->cpu_seconds();
    } catch (const std::exception& error) {
      state.SkipWithError(error.what());
      break;
    }
    const CurlRun run = run_curl(curl, args);
    state.SetIterationTime(run.wall_s);
    if (!run.error.empty()) {
      state.SkipWithError(run.error.c_str());
      break;
    }
    std::size_t lines = 0;
    std::size_t good = 0;
    std::size_t at = 0;
    while (at < run.out.size()) {
      std::size_t end = run.out.find('\n', at);
      if (end == std::string::npos) end = run.out.size();
      ++lines;
      if (run.out.compare(at, end - at, expected_line) == 0) ++good;
      at = end + 1;
    }
    std::string problem;
    crew_bench::ServeStats after;
    try {
      after = server->stats();
      server_cpu_s += server->cpu_seconds();
    } catch (const std::exception& error) {
      problem = error.what();
    }
    if (problem.empty() && (lines != count || good != count)) {
      problem = "curl reported " + std::to_string(good) + " of " + std::to_string(count) +
                " URLs as \"" + expected_line + "\" (" + std::to_string(lines) + " lines)";
    }
    if (problem.empty() && after.requests - before.requests != count) {
      problem = "the server answered " + std::to_string(after.requests - before.requests) +
                " requests for " + std::to_string(count) + " URLs";
    }
    if (!problem.empty()) {
      state.SkipWithError(problem.c_str());
      break;
    }
    wall_s += run.wall_s;
    cpu_s += run.cpu_s;
    connections += static_cast<double>(after.connections - before.connections - 1);
    server_peak = std::max(server_peak, after.peak_in_flight);
  }
  if (state.error_occurred()) return;

  using benchmark::Counter;
  state.counters["ideal_ratio"] = Counter(wall_s / ideal_s, Counter::kAvgIterations);
  state.counters["cpu_ms"] = Counter(cpu_s * 1e3, Counter::kAvgIterations);
  state.counters["cpu_per_req_us"] =
      Counter(cpu_s * 1e6 / static_cast<double>(count), Counter::kAvgIterations);
  state.counters["connections"] = Counter(connections, Counter::kAvgIterations);
  state.counters["server_cpu_ms"] = Counter(server_cpu_s * 1e3, Counter::kAvgIterations);
  state.counters["server_peak"] = static_cast<double>(server_peak);
  crew_bench::report_per(state, count, "request");
}

BENCHMARK(BM_CurlParallel_Many)
    ->ArgNames({"concurrency"})
    ->ArgsProduct({crew_bench::fetch_many_concurrency()})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

}  // namespace
