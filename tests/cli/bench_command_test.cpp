// crew-test-label: process
// Tests of `crew bench` as a user runs it, on jobs small enough to take a second or two: the shape
// of the table, JSON and CSV, the plot, the article's Python beside crew, Ctrl-C and bad input.
// What the verdict says for given measurements is tested in tests/sweep_test.cpp (no timing here).
// Each test runs the binary named by $CREW_CLI, whose process engine forks workers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
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
  const CommandResult r = run_crew(
      {"bench", "cpu", "--below", "20000", "--max-workers", "2", "--repeat", "2", "--json"});
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
  const CommandResult table =
      run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "2", "--repeat", "1"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, StartsWith("crew bench cpu: primes below 10,000; "));
  EXPECT_THAT(table.out, HasSubstr("engine      workers       wall   spread  speed-up"));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\nserial +1 +[0-9.]+ [^ ]+ +±0.0% +1.00× "));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\nverdict: [^\n]+\n$"));

  const CommandResult csv = run_crew(
      {"bench", "cpu", "--below", "10000", "--max-workers", "2", "--repeat", "1", "--csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  std::istringstream lines(csv.out);
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(lines, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 1U + 1 + 4);  // header, serial, thread and process at 1 and 2 workers
  EXPECT_EQ(rows[0],
            "job,engine,workers,wall_s,wall_min_s,wall_max_s,cpu_s,peak_rss_bytes,speedup,"
            "efficiency");
  EXPECT_THAT(rows[1], StartsWith("cpu,serial,1,"));
  EXPECT_THAT(csv.err, HasSubstr("verdict: "));
}

TEST_F(BenchCommandTest, PlotWritesAPng) {
  const std::filesystem::path png = std::filesystem::temp_directory_path() /
                                    ("crew-bench-test-" + std::to_string(::getpid()) + ".png");
  const CommandResult r = run_crew({"bench", "cpu", "--below", "10000", "--max-workers", "2",
                                    "--repeat", "1", "--plot", png.string()});
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
  const CommandResult r = run_crew({"bench", "io", "--urls", "8", "--latency", "5ms",
                                    "--max-workers", "4", "--repeat", "1", "--json"});
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
  const CommandResult r = run_crew({"bench", "synthetic", "--cpu-us", "0,300", "--tasks", "100",
                                    "--max-workers", "2", "--repeat", "1", "--json"});
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
  const CommandResult r = run_crew({"bench", "cpu", "--below", "20000", "--max-workers", "2",
                                    "--repeat", "1", "--compare-python", "--json"});
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
                      "--max-workers", "2", "--repeat", "20", "--json"});
  std::this_thread::sleep_for(1500ms);
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

TEST_F(BenchCommandTest, CtrlCInATerminalStopsTheIoSweepAndItsServer) {
  // The whole process group gets the SIGINT, as from a terminal; the server child has a group of
  // its own, so crew bench stops it after the interrupted run.
  // A body size of this test process's own, so that pgrep below never sees the server of another
  // run of this test (another build tree on the same machine).
  const std::string body = std::to_string(1'000 + ::getpid() % 9'000);
  ChildProcess child({crew_cli(), "bench", "io", "--urls", "20", "--latency", "30ms",
                      "--max-workers", "4", "--repeat", "5", "--body", body},
                     {.own_process_group = true});
  std::this_thread::sleep_for(1500ms);
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

TEST_F(BenchCommandTest, BadUsageExitsTwoWithOneLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"gpu"}, "the job must be cpu, io or synthetic"},
      {{}, "job"},
      {{"io", "--below", "1000"}, "--below is for the cpu job"},
      {{"cpu", "--urls", "5"}, "this is the cpu job"},
      {{"cpu", "--repeat", "0"}, "--repeat"},
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
