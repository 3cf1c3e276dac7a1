// crew-test-label: process
// Tests of `crew bench` as a user runs it, on jobs small enough to take a second or two: the shape
// of the table, JSON and CSV, the plot, the article's Python beside crew, Ctrl-C and bad input.
// What the verdict says for given measurements is tested in tests/sweep_test.cpp (no timing here).
// Each test runs the binary named by $CREW_CLI, whose process engine forks workers.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/http_client.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

class BenchCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
};

// The worker counts a sweep with --max-workers 2 measures: 1, 2 (and the core count, when ≤ 2).
std::set<int> workers_of(const nlohmann::json& points, const std::string& engine) {
  std::set<int> workers;
  for (const auto& point : points) {
    if (point["engine"] == engine) workers.insert(point["workers"].get<int>());
  }
  return workers;
}

void expect_point_shape(const nlohmann::json& point, int repeat) {
  EXPECT_GT(point["wall_s"].get<double>(), 0.0) << point;
  EXPECT_LE(point["wall_min_s"].get<double>(), point["wall_s"].get<double>());
  EXPECT_GE(point["wall_max_s"].get<double>(), point["wall_s"].get<double>());
  EXPECT_GT(point["speedup"].get<double>(), 0.0);
  EXPECT_NEAR(point["efficiency"].get<double>(),
              point["speedup"].get<double>() / point["workers"].get<double>(), 1e-9);
  EXPECT_GT(point["peak_rss_bytes"].get<double>(), 0.0);
  EXPECT_EQ(point["samples"].size(), static_cast<std::size_t>(repeat));
}

TEST_F(BenchCommandTest, CpuJobJsonHasSerialEveryPointAndAVerdict) {
  const CommandResult r = run_crew({"bench", "cpu", "--below", "20000", "--max-workers", "2",
                                    "--repeat", "2", "--warmup", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["job"], "cpu");
  EXPECT_EQ(document["description"], "primes below 20,000");
  EXPECT_EQ(document["repeat"], 2);
  EXPECT_EQ(document["interrupted"], false);
  EXPECT_EQ(document["serial"]["engine"], "serial");
  EXPECT_NEAR(document["serial"]["speedup"].get<double>(), 1.0, 1e-9);
  expect_point_shape(document["serial"], 2);
  EXPECT_EQ(workers_of(document["points"], "thread"), (std::set<int>{1, 2}));
  EXPECT_EQ(workers_of(document["points"], "process"), (std::set<int>{1, 2}));
  for (const auto& point : document["points"]) expect_point_shape(point, 2);
  // The process points count their workers' CPU (reaped inside the run).
  const auto& verdict = document["verdict"];
  EXPECT_THAT(verdict["sentence"].get<std::string>(),
              ::testing::ContainsRegex("^(CPU|IO)-bound \\(CPU/wall [0-9.]+\\)\\. "));
  EXPECT_TRUE(verdict["engine"] == "serial" || verdict["engine"] == "thread" ||
              verdict["engine"] == "process");
  EXPECT_TRUE(document["python"].empty());
}

TEST_F(BenchCommandTest, TableEndsWithTheVerdictAndCsvHasOneRowPerPoint) {
  const CommandResult table = run_crew(
      {"bench", "cpu", "--below", "10000", "--max-workers", "2", "--repeat", "1", "--warmup", "0"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, StartsWith("crew bench cpu: primes below 10,000; "));
  EXPECT_THAT(table.out, HasSubstr("engine      workers runs        wall mean ± σ  min … max"));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\nserial +1 +1 +[0-9.]+ [^ ]+ ± \\? +"));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\nverdict: [^\n]+\n$"));

  const CommandResult csv = run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "2",
                                      "--repeat", "1", "--warmup", "0", "--csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  std::istringstream lines(csv.out);
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(lines, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 1U + 1 + 4);  // header, serial, thread and process at 1 and 2 workers
  EXPECT_EQ(rows[0],
            "job,engine,workers,wall_s,wall_min_s,wall_max_s,cpu_s,peak_rss_bytes,speedup,"
            "efficiency,runs,wall_stddev_s,wall_median_s,speedup_low,speedup_high");
  EXPECT_THAT(rows[1], StartsWith("cpu,serial,1,"));
  EXPECT_THAT(csv.err, HasSubstr("verdict: "));
}

TEST_F(BenchCommandTest, PlotWritesAPng) {
  const std::filesystem::path png = std::filesystem::temp_directory_path() /
                                    ("crew-bench-test-" + std::to_string(::getpid()) + ".png");
  const CommandResult r = run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "2",
                                    "--repeat", "1", "--warmup", "0", "--plot", png.string()});
  if (r.exit_code == 1 && r.err.find("needs gnuplot") != std::string::npos) {
    GTEST_SKIP() << "gnuplot is not installed";
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("plot: " + png.string()));
  std::ifstream file(png, std::ios::binary);
  std::string head(8, '\0');
  file.read(head.data(), 8);
  EXPECT_EQ(head, std::string("\x89PNG\r\n\x1a\n", 8));
  std::filesystem::remove(png);
}

TEST_F(BenchCommandTest, IoJobSweepsEveryEngineAgainstItsOwnServer) {
  const CommandResult r =
      run_crew({"bench", "io", "--urls", "8", "--latency", "5ms", "--max-workers", "4", "--repeat",
                "1", "--warmup", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["job"], "io");
  for (const char* engine : {"thread", "process", "event-loop"}) {
    EXPECT_EQ(workers_of(document["points"], engine), (std::set<int>{1, 2, 4})) << engine;
  }
  // 8 URLs × 5 ms: serial takes at least 40 ms; the server's latency is real.
  EXPECT_GE(document["serial"]["wall_s"].get<double>(), 0.040);
  // IO waits: the serial run's CPU is a small part of its wall time.
  EXPECT_LT(document["verdict"]["cpu_per_wall"].get<double>(), 0.5);
}

TEST_F(BenchCommandTest, SyntheticJobGivesABreakEvenPerEngine) {
  const CommandResult r =
      run_crew({"bench", "synthetic", "--cpu-us", "0,300", "--tasks", "100", "--max-workers", "2",
                "--repeat", "1", "--warmup", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["job"], "synthetic");
  ASSERT_EQ(document["sizes"].size(), 2U);
  EXPECT_EQ(document["sizes"][0]["cpu_us"], 0);
  EXPECT_EQ(document["sizes"][1]["cpu_us"], 300);
  // 100 tasks × 300 µs of CPU: the serial run burns at least 30 ms.
  EXPECT_GE(document["sizes"][1]["sweep"]["serial"]["cpu_s"].get<double>(), 0.025);
  ASSERT_EQ(document["break_even"].size(), 2U);
  EXPECT_EQ(document["break_even"][0]["engine"], "thread");
  EXPECT_EQ(document["break_even"][1]["engine"], "process");
}

TEST_F(BenchCommandTest, ComparesWithTheArticlesPython) {
  if (std::system("python3 -c pass >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  const CommandResult r =
      run_crew({"bench", "cpu", "--below", "20000", "--max-workers", "2", "--repeat", "1",
                "--warmup", "0", "--compare-python", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  ASSERT_EQ(document["python"].size(), 3U);
  EXPECT_EQ(document["python"][0]["what"], "Python for loop");
  EXPECT_EQ(document["python"][0]["crew_engine"], "serial");
  EXPECT_THAT(document["python"][1]["what"].get<std::string>(), StartsWith("ThreadPoolExecutor("));
  EXPECT_THAT(document["python"][2]["what"].get<std::string>(),
              StartsWith("multiprocessing.Pool("));
  for (const auto& comparison : document["python"]) {
    EXPECT_GT(comparison["wall_s"].get<double>(), 0.0) << comparison;
    EXPECT_GT(comparison["crew_wall_s"].get<double>(), 0.0) << comparison;
    EXPECT_NEAR(comparison["crew_speedup"].get<double>(),
                comparison["wall_s"].get<double>() / comparison["crew_wall_s"].get<double>(), 1e-9);
  }
}

TEST_F(BenchCommandTest, CtrlCPrintsThePointsMeasuredAndExits130) {
  ChildProcess child({crew_cli(), "bench", "synthetic", "--cpu-us", "1000", "--tasks", "300",
                      "--max-workers", "2", "--repeat", "20", "--warmup", "0", "--json"});
  // The serial run burns 300 × 1 ms of its thread's CPU: once the process has used 400 ms, it has
  // finished (a fixed sleep raced a loaded machine, where the first run took longer).
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (cpu_time(child.pid()) < 400ms && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(::kill(child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(60s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, ::testing::ContainsRegex("interrupted: [0-9]+ of 100 runs done"));
  const auto document = nlohmann::json::parse(r.out);
  const auto& sweep = document["sizes"][0]["sweep"];
  EXPECT_EQ(sweep["interrupted"], true);
  EXPECT_GE(sweep["serial"]["samples"].size(), 1U);
  EXPECT_THAT(sweep["verdict"]["sentence"].get<std::string>(),
              StartsWith("From the points measured before the interruption: "));
}

// The pid of a child of `parent` (any of its threads' children) whose command line contains
// `needle`, or -1.
pid_t child_with(pid_t parent, std::string_view needle) {
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", parent), error)) {
    std::ifstream children(task.path() / "children");
    pid_t pid = -1;
    while (children >> pid) {
      std::ifstream cmdline_file(fmt::format("/proc/{}/cmdline", pid));
      std::string cmdline((std::istreambuf_iterator<char>(cmdline_file)), {});
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find(needle) != std::string::npos) return pid;
    }
  }
  return -1;
}

// The IPv4 TCP port that `pid` listens on, from its socket descriptors and /proc/PID/net/tcp; 0
// when none (yet).
std::uint16_t listening_port(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code error;
  for (const auto& fd :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), error)) {
    const std::string target = std::filesystem::read_symlink(fd.path(), error).string();
    if (target.starts_with("socket:[")) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::ifstream tcp(fmt::format("/proc/{}/net/tcp", pid));
  std::string line;
  std::getline(tcp, line);  // the header
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeouts, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeouts >> inode;
    if (state == "0A" && inodes.contains(inode)) {
      return static_cast<std::uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16));
    }
  }
  return 0;
}

// How many counted requests the crew serve child of `parent` (found by `needle` in its command
// line) has served, from its /stats; 0 while it is not there or not listening yet.
std::uint64_t requests_served_by_child(pid_t parent, std::string_view needle) {
  const pid_t server = child_with(parent, needle);
  if (server < 0) return 0;
  const std::uint16_t port = listening_port(server);
  if (port == 0) return 0;
  try {
    server_test::Client client(port);
    client.set_read_timeout(5s);
    client.get("/stats");
    const server_test::Response response = client.read_response();
    if (response.status != 200) return 0;
    return nlohmann::json::parse(response.body).value("requests", std::uint64_t{0});
  } catch (const std::exception&) {
    return 0;  // it went away or is not accepting yet
  }
}

TEST_F(BenchCommandTest, CtrlCInATerminalStopsTheIoSweepAndItsServer) {
  // The whole process group gets the SIGINT, as from a terminal; the server child has a group of
  // its own, so crew bench stops it after the interrupted run.
  // A body size of this test process's own, so that pgrep below never sees the server of another
  // run of this test (another build tree on the same machine).
  const std::string body = std::to_string(1'000 + ::getpid() % 9'000);
  ChildProcess child({crew_cli(), "bench", "io", "--urls", "20", "--latency", "30ms",
                      "--max-workers", "4", "--repeat", "5", "--warmup", "0", "--body", body},
                     {.own_process_group = true});
  // Interrupted once the serial point's first run is done, so there is a point to report: the
  // server counts a request when it arrives, and the serial loop sends the 21st only after the
  // first run's 20 answers. A fixed sleep raced a loaded machine, where the server had not even
  // started.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  std::uint64_t served = 0;
  while (served < 21 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    served = requests_served_by_child(child.pid(), "--body " + body);
  }
  ASSERT_GE(served, 21U) << "the crew serve child never served the first run";
  ASSERT_EQ(::kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(60s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, ::testing::ContainsRegex("interrupted: [0-9]+ of [0-9]+ runs done"));
  EXPECT_THAT(r.out, HasSubstr("verdict: From the points measured before the interruption"));
  // "[1]234": the pattern must not match the shell that runs pgrep.
  const std::string pattern = "crew serve --port 0 --latency 30ms --body [" + body.substr(0, 1) +
                              "]" + body.substr(1) + "( |$)";
  EXPECT_NE(std::system(("pgrep -f '" + pattern + "' >/dev/null").c_str()), 0)
      << "the crew serve child outlived crew bench";
}

// --repeat 1 printed "±0.0%": one run says nothing of the spread (issue 11, item 13).
TEST_F(BenchCommandTest, OneRunPerPointSaysTheSpreadIsUnknown) {
  const CommandResult r = run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "1",
                                    "--engines", "thread", "--repeat", "1", "--warmup", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("±0.0"))) << r.out;
  EXPECT_THAT(r.out, HasSubstr("± ?: one run, so the spread is unknown."));
  EXPECT_THAT(r.err, HasSubstr("warning: one run per point: the spread is unknown"));
}

// --min-runs alone above the default --max-runs (20) raises the ceiling with it, as hyperfine
// does: it was refused, "--min-runs 25 is above --max-runs 20", naming an option never given.
TEST_F(BenchCommandTest, MinRunsAloneAboveTheDefaultCeilingRaisesIt) {
  const CommandResult r =
      run_crew({"bench", "cpu", "--below", "1000", "--max-workers", "1", "--engines", "thread",
                "--min-runs", "25", "--warmup", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["runs"]["min_runs"], 25);
  EXPECT_EQ(document["runs"]["max_runs"], 25);
  EXPECT_EQ(document["serial"]["runs"], 25);
}

// Without --repeat, each point runs as hyperfine's do: warm-up, then until the standard error is
// small or the time budget is spent; the JSON says how, and gives mean ± σ per point.
TEST_F(BenchCommandTest, RunsAreRepeatedUntilTheErrorIsSmallOrTheBudgetSpent) {
  const CommandResult r =
      run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "1", "--engines", "thread",
                "--min-runs", "2", "--max-runs", "6", "--max-time", "100ms", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_TRUE(document["repeat"].is_null());
  EXPECT_EQ(document["runs"]["warmup"], 1);
  EXPECT_EQ(document["runs"]["min_runs"], 2);
  EXPECT_EQ(document["runs"]["max_runs"], 6);
  EXPECT_DOUBLE_EQ(document["runs"]["max_time_s"].get<double>(), 0.1);
  for (const auto& point : {document["serial"], document["points"][0]}) {
    const auto runs = point["runs"].get<std::size_t>();
    EXPECT_GE(runs, 2U) << point;
    EXPECT_LE(runs, 6U) << point;
    EXPECT_EQ(point["samples"].size(), runs) << "warm-ups are not samples";
    EXPECT_GE(point["wall_stddev_s"].get<double>(), 0.0) << point;
  }
  EXPECT_TRUE(document["points"][0]["speedup_low"].is_number());
  EXPECT_TRUE(document["verdict"]["conclusive"].is_boolean());
  EXPECT_TRUE(document["verdict"]["warnings"].is_array());
}

// gnuplot's absence was reported only after the whole sweep ran (issue 11, item 14).
TEST_F(BenchCommandTest, MissingGnuplotFailsBeforeTheSweep) {
  ChildProcess child(
      {crew_cli(), "bench", "cpu", "--below", "10000", "--max-workers", "1", "--engines", "thread",
       "--repeat", "1", "--warmup", "0", "--plot", "/tmp/crew-bench-never.png"},
      {.env = {"PATH=/nonexistent"}});
  const CommandResult r = child.wait(60s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "") << "nothing may run before the check";
  EXPECT_THAT(r.err, HasSubstr("--plot needs gnuplot, which is not on PATH"));
  EXPECT_THAT(r.err, HasSubstr("nothing was run"));
}

TEST_F(BenchCommandTest, MissingPythonFailsBeforeTheSweep) {
  ChildProcess child({crew_cli(), "bench", "cpu", "--below", "10000", "--max-workers", "1",
                      "--engines", "thread", "--repeat", "1", "--warmup", "0", "--compare-python"},
                     {.env = {"CREW_PYTHON=/nonexistent/python3"}});
  const CommandResult r = child.wait(60s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "") << "nothing may run before the check";
  EXPECT_THAT(r.err, HasSubstr("--compare-python needs /nonexistent/python3"));
}

// The progress bar was wider than a 50-column terminal: it wrapped, and "\r" went back only to
// the start of the last row, leaving stale rows (issue 11, item 14). COLUMNS gives the width where
// the terminal reports none (this pseudo-terminal's size is 0 × 0).
TEST_F(BenchCommandTest, ProgressFitsANarrowTerminalAndIsErased) {
  ChildProcess child(
      {crew_cli(), "bench", "synthetic", "--cpu-us", "3000", "--tasks", "100", "--max-workers", "1",
       "--engines", "thread", "--repeat", "4", "--warmup", "0", "--json"},
      {.stderr_is_terminal = true, .env = {"COLUMNS=50"}});
  const CommandResult r = child.wait(120s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Each drawing is "\r" + the line + "\033[K"; the erase at the end is "\r\033[K".
  std::size_t drawn = 0;
  for (std::size_t at = r.err.find('\r'); at != std::string::npos; at = r.err.find('\r', at + 1)) {
    const std::size_t end = r.err.find("\033[K", at);
    if (end == std::string::npos) continue;
    const std::string line = r.err.substr(at + 1, end - at - 1);
    if (line.empty() || line.find('\n') != std::string::npos) continue;
    ++drawn;
    EXPECT_LT(line.size(), 50U) << "\"" << line << "\"";
  }
  EXPECT_GT(drawn, 0U) << "the run (8 × 0.3 s) outlasts the bar's 0.5 s delay: " << r.err;
  EXPECT_NE(r.err.find("\r\033[K"), std::string::npos) << "erased at the end";
}

TEST_F(BenchCommandTest, BadUsageExitsTwoWithOneLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"gpu"}, "the job must be cpu, io or synthetic"},
      {{}, "job"},
      {{"io", "--below", "1000"}, "--below is for the cpu job"},
      {{"cpu", "--urls", "5"}, "this is the cpu job"},
      {{"cpu", "--repeat", "0"}, "--repeat"},
      {{"cpu", "--repeat", "3", "--min-runs", "5"}, "--repeat is an exact count"},
      {{"cpu", "--min-runs", "9", "--max-runs", "4"}, "--min-runs 9 is above --max-runs 4"},
      {{"cpu", "--target-rse", "0"}, "--target-rse takes a percentage"},
      {{"cpu", "--target-rse", "2x"}, "--target-rse takes a percentage"},
      {{"cpu", "--max-time", "forever"}, "--max-time takes a duration"},
      {{"cpu", "--warmup", "-1"}, "--warmup"},
      {{"cpu", "--max-workers", "0"}, "--max-workers"},
      {{"cpu", "--json", "--csv"}, "pick one"},
      {{"cpu", "--plot", "out.jpg"}, "ending in .png"},
      {{"cpu", "--engines", "event-loop"}, "not an engine of the cpu job"},
      {{"synthetic", "--compare-python"}, "for the cpu and io jobs only"},
      {{"synthetic", "--cpu-us", "0", "--io-us", "0"}, "would do nothing"},
      {{"synthetic", "--cpu-us", "10,x"}, "--cpu-us"},
      {{"cpu", "--below", "1e10"}, "add --yes"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {"bench"};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult r = run_crew(argv, 60s);
    EXPECT_EQ(r.exit_code, 2) << message << "\n" << r.err;
    EXPECT_EQ(r.out, "") << message;
    EXPECT_THAT(r.err, StartsWith("crew: error: ")) << message;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_THAT(r.err, HasSubstr("crew bench --help")) << message;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace crew::testing
