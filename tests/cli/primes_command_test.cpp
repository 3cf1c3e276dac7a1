// Tests of the crew command as a user runs it: `crew primes`, `crew --help`, `crew --version`,
// usage errors and Ctrl-C. Each test runs the binary named by $CREW_CLI in a child process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "crew/workloads/primes.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr std::int64_t kSumBelow1e6 = 37'550'402'023;
constexpr std::int64_t kSumBelow1e7 = 3'203'324'994'356;

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

class PrimesCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
};

// Polls /proc until `pid`'s main thread has SIGINT blocked: from then on a SIGINT waits for the
// CLI's watcher thread instead of killing the process by default, so sending one is not a race.
void wait_until_sigint_blocked(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((signal_set(pid, "SigBlk") & signal_bit(SIGINT)) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crew never blocked SIGINT";
    std::this_thread::sleep_for(1ms);
  }
}

// Polls /proc until `pid` has used `cpu` of CPU time: the run is under way (parsing the command
// line and starting threads take a few milliseconds), so a signal meets work in flight.
void wait_until_busy(pid_t pid, std::chrono::milliseconds cpu = 100ms) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (cpu_time(pid) < cpu) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crew never got busy";
    std::this_thread::sleep_for(1ms);
  }
}

// Polls /proc until no SIGINT is pending for `pid` as a whole: the watcher has taken it.
void wait_until_sigint_taken(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((signal_set(pid, "ShdPnd") & signal_bit(SIGINT)) != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crew never took the SIGINT";
    std::this_thread::sleep_for(1ms);
  }
}

void expect_group_gone(pid_t group) {
  errno = 0;
  EXPECT_EQ(kill(-group, 0), -1) << "a process of the group outlived the test";
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(PrimesCommandTest, SerialPrintsTheArticlesAnswer) {
  const CommandResult r = run_crew({"primes", "--below", "1000000", "--engine", "serial"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("answer: 37550402023\n"));
  EXPECT_THAT(r.out, HasSubstr("sum of primes below 1,000,000 = 37,550,402,023"));
  EXPECT_THAT(r.out, HasSubstr("engine: serial"));
  EXPECT_THAT(r.out, HasSubstr("CPU times: user"));
  EXPECT_THAT(r.out, HasSubstr("Wall time: "));
  EXPECT_EQ(r.err, "") << "no progress bar when stderr is not a terminal";
}

TEST_F(PrimesCommandTest, ProgressBarIsDrawnOnATerminalAndErasedAtTheEnd) {
  // Work well past the bar's half-second delay on one worker: 2.3 s on this VM on 2026-11-30 (5e6,
  // the earlier figure, took only 0.5 s there: the test became flaky as the machine got faster).
  ChildProcess child({crew_cli(), "primes", "--below", "1.5e7", "--workers", "1"},
                     {.stderr_is_terminal = true, .env = {"TERM=xterm"}});
  const CommandResult r = child.wait(100s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("answer: 7026422648071\n"));
  EXPECT_THAT(r.err, ::testing::ContainsRegex(
                         "\\[=*>? *\\] +[0-9]+% [0-9.]+[kM]?/15M numbers, [0-9.]+[kMG]?/s, ETA "));
  EXPECT_THAT(r.err, ::testing::EndsWith("\r\033[K")) << "the bar is erased when the run ends";
}

TEST_F(PrimesCommandTest, ThreadEngineByDefaultPrintsWorkersAndWhy) {
  const CommandResult r = run_crew({"primes"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("answer: 37550402023\n"));
  EXPECT_THAT(r.out, HasSubstr("engine: thread, workers: "));
  EXPECT_THAT(r.out, HasSubstr("affinity"));
  EXPECT_THAT(r.out, HasSubstr("chunksize: auto"));
}

TEST_F(PrimesCommandTest, BelowAcceptsDigitsSeparatorsAndENotation) {
  for (const char* below : {"1000", "1_000", "1,000", "1e3", "1E3"}) {
    const CommandResult r = run_crew({"primes", "--below", below, "--engine", "serial"});
    EXPECT_EQ(r.exit_code, 0) << below << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("answer: 76127\n")) << below;
  }
}

TEST_F(PrimesCommandTest, BelowZeroAndOneSumToZero) {
  for (const char* below : {"0", "1", "2"}) {
    const CommandResult r = run_crew({"primes", "--below", below});
    EXPECT_EQ(r.exit_code, 0) << below << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("answer: 0\n")) << below;
  }
}

TEST_F(PrimesCommandTest, ThreadJsonBelow1e7HasTheAnswerAndEveryTimingField) {
  const CommandResult r = run_crew({"primes", "--below", "1e7", "--engine", "thread", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  ASSERT_EQ(count_lines(r.out), 1u) << "one JSON object on one line: " << r.out;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("command"), "primes");
  EXPECT_EQ(doc.at("below").get<std::int64_t>(), 10'000'000);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), kSumBelow1e7);
  EXPECT_EQ(doc.at("engine"), "thread");
  EXPECT_GE(doc.at("workers").get<std::int64_t>(), 1);
  EXPECT_FALSE(doc.at("workers_reason").get<std::string>().empty());
  EXPECT_EQ(doc.at("chunksize"), "auto");
  EXPECT_EQ(doc.at("interrupted"), false);
  EXPECT_EQ(doc.at("numbers_checked").get<std::int64_t>(), 10'000'000);
  EXPECT_EQ(doc.at("partial_sum").get<std::int64_t>(), kSumBelow1e7);
  const nlohmann::json& timing = doc.at("timing");
  for (const char* field :
       {"wall_s", "user_s", "sys_s", "children_user_s", "children_sys_s", "cpu_s", "parallelism"}) {
    ASSERT_TRUE(timing.contains(field)) << field;
    EXPECT_TRUE(timing.at(field).is_number()) << field;
    EXPECT_GE(timing.at(field).get<double>(), 0.0) << field;
  }
  EXPECT_GT(timing.at("wall_s").get<double>(), 0.0);
  EXPECT_GT(timing.at("user_s").get<double>(), 0.0);
  EXPECT_GT(timing.at("peak_rss_bytes").get<std::int64_t>(), 0);
  EXPECT_TRUE(timing.at("peak_rss_is_block_peak").is_boolean());
}

TEST_F(PrimesCommandTest, ExplicitWorkersAndChunksizeGiveTheSameAnswer) {
  const CommandResult r = run_crew({"primes", "--below", "1e7", "--engine", "thread", "--workers",
                                    "2", "--chunksize", "1000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), kSumBelow1e7);
  EXPECT_EQ(doc.at("workers").get<std::int64_t>(), 2);
  EXPECT_EQ(doc.at("workers_reason"), "--workers");
  EXPECT_EQ(doc.at("chunksize").get<std::int64_t>(), 1000);
}

TEST_F(PrimesCommandTest, SerialJsonHasNoChunksize) {
  const CommandResult r = run_crew({"primes", "--engine", "serial", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), kSumBelow1e6);
  EXPECT_EQ(doc.at("engine"), "serial");
  EXPECT_EQ(doc.at("workers").get<std::int64_t>(), 1);
  EXPECT_TRUE(doc.at("chunksize").is_null());
}

// A command line that must be refused: exit 2, one line on stderr, nothing on stdout.
struct UsageCase {
  const char* name;
  std::vector<std::string> args;
  const char* says;  // part of the one line

  // What ctest shows for the case: the command line, not 40 bytes of hex.
  friend void PrintTo(const UsageCase& c, std::ostream* os) {
    *os << "crew";
    for (const std::string& arg : c.args) *os << ' ' << arg;
  }
};

class PrimesCommandUsageTest : public PrimesCommandTest,
                               public ::testing::WithParamInterface<UsageCase> {};

TEST_P(PrimesCommandUsageTest, ExitsTwoWithOneLineOnStderr) {
  const UsageCase& c = GetParam();
  const CommandResult r = run_crew(c.args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr("crew: error: "));
  EXPECT_THAT(r.err, HasSubstr(c.says));
  EXPECT_THAT(r.err, HasSubstr("--help"));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PrimesCommandUsageTest,
    ::testing::Values(
        UsageCase{"BelowNotANumber", {"primes", "--below", "abc"}, "expected a whole number"},
        UsageCase{"BelowNegative", {"primes", "--below", "-5"}, "between 0 and 1e10"},
        UsageCase{"BelowTooLarge", {"primes", "--below", "1e11"}, "between 0 and 1e10, got 1e11"},
        UsageCase{"BelowFarTooLarge",
                  {"primes", "--below", "99999999999999999999999"},
                  "between 0 and 1e10"},
        UsageCase{"BelowFractional", {"primes", "--below", "1.5"}, "whole number"},
        UsageCase{"BelowMissingValue", {"primes", "--below"}, "--below"},
        UsageCase{"EngineUnknown", {"primes", "--engine", "gpu"}, "serial, thread or process"},
        UsageCase{"WorkersZero", {"primes", "--workers", "0"}, "--workers must be between 1"},
        UsageCase{"WorkersTooMany", {"primes", "--workers", "5000"}, "between 1 and 4096"},
        UsageCase{"WorkersNegative", {"primes", "--workers", "-2"}, "--workers"},
        UsageCase{"WorkersWithSerial",
                  {"primes", "--engine", "serial", "--workers", "2"},
                  "--engine thread or process only"},
        UsageCase{"ChunksizeWithSerial",
                  {"primes", "--engine", "serial", "--chunksize", "10"},
                  "--chunksize applies to --engine thread or process only"},
        UsageCase{"WorkersTooManyForProcesses",
                  {"primes", "--engine", "process", "--workers", "2000"},
                  "--workers must be between 1 and 1024"},
        UsageCase{"ChunksizeTooLargeForProcesses",
                  {"primes", "--engine", "process", "--chunksize", "1e9"},
                  "--chunksize for --engine process must be at most 1,048,576"},
        UsageCase{"TaskTimeoutWithThread",
                  {"primes", "--task-timeout", "500ms"},
                  "--task-timeout applies to --engine process only, not thread"},
        UsageCase{"TaskTimeoutWithSerial",
                  {"primes", "--engine", "serial", "--task-timeout", "2s"},
                  "--task-timeout applies to --engine process only, not serial"},
        UsageCase{"TaskTimeoutZero",
                  {"primes", "--engine", "process", "--task-timeout", "0ms"},
                  "--task-timeout must be more than 0 ms, got 0ms"},
        UsageCase{"TaskTimeoutNegative",
                  {"primes", "--engine", "process", "--task-timeout", "-5"},
                  "--task-timeout must be a duration such as 500ms"},
        UsageCase{"TaskTimeoutUnknownUnit",
                  {"primes", "--engine", "process", "--task-timeout", "5h"},
                  "--task-timeout must be a duration such as 500ms, 2s or 1.5s"},
        UsageCase{"TaskTimeoutNotANumber",
                  {"primes", "--engine", "process", "--task-timeout", "soon"},
                  "got \"soon\""},
        UsageCase{"TaskTimeoutFractionalMilliseconds",
                  {"primes", "--engine", "process", "--task-timeout", "1.5ms"},
                  "whole number of milliseconds"},
        UsageCase{"TaskTimeoutTooLong",
                  {"primes", "--engine", "process", "--task-timeout", "90000s"},
                  "at most 86400s (a day), got 90000s"},
        UsageCase{"TaskTimeoutTimesChunksizeTooLong",
                  {"primes", "--below", "1e10", "--engine", "process", "--chunksize", "1e6",
                   "--task-timeout", "86400s"},
                  "--task-timeout 86400s × --chunksize 1e6"},
        UsageCase{"TaskTimeoutMissingValue",
                  {"primes", "--engine", "process", "--task-timeout"},
                  "--task-timeout"},
        UsageCase{"MaxTasksPerChildWithThread",
                  {"primes", "--engine", "thread", "--max-tasks-per-child", "5"},
                  "--max-tasks-per-child applies to --engine process only, not thread"},
        UsageCase{"MaxTasksPerChildZero",
                  {"primes", "--engine", "process", "--max-tasks-per-child", "0"},
                  "--max-tasks-per-child must be at least 1, got 0"},
        UsageCase{"MaxTasksPerChildNotANumber",
                  {"primes", "--engine", "process", "--max-tasks-per-child", "many"},
                  "--max-tasks-per-child must be a whole number"},
        UsageCase{
            "ChunksizeZero", {"primes", "--chunksize", "0"}, "--chunksize must be at least 1"},
        UsageCase{"ChunksizeNotANumber", {"primes", "--chunksize", "big"}, "--chunksize"},
        UsageCase{"UnknownOption", {"primes", "--bogus"}, "--bogus"},
        UsageCase{"UnknownTopLevelOption", {"--bogus"}, "--bogus"},
        UsageCase{"UnknownCommand", {"frobnicate"}, "unknown command \"frobnicate\""},
        UsageCase{"NoCommand", {}, "a command is required"}),
    [](const ::testing::TestParamInfo<UsageCase>& info) { return std::string(info.param.name); });

TEST_F(PrimesCommandTest, HelpMentionsEveryOptionWithItsDefault) {
  const CommandResult r = run_crew({"primes", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("--below N"));
  EXPECT_THAT(r.out, HasSubstr("Default: 1000000"));
  EXPECT_THAT(r.out, HasSubstr("--engine"));
  EXPECT_THAT(r.out, HasSubstr("Default: thread"));
  EXPECT_THAT(r.out, HasSubstr("--workers"));
  EXPECT_THAT(r.out, HasSubstr("affinity"));  // the default and why
  EXPECT_THAT(r.out, HasSubstr("--chunksize"));
  EXPECT_THAT(r.out, HasSubstr("Default: auto"));
  EXPECT_THAT(r.out, HasSubstr("--json"));
  EXPECT_THAT(r.out, HasSubstr("Default: off"));
  EXPECT_THAT(r.out, HasSubstr("process"));
  EXPECT_THAT(r.out, HasSubstr("--task-timeout MS"));
  EXPECT_THAT(r.out, HasSubstr("Default: no limit"));
  EXPECT_THAT(r.out, HasSubstr("--max-tasks-per-child N"));
  EXPECT_THAT(r.out, HasSubstr("Default: workers live as long as the run"));
}

TEST_F(PrimesCommandTest, TopLevelHelpTeachesTheCommands) {
  const CommandResult r = run_crew({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("primes"));
  EXPECT_THAT(r.out, HasSubstr("demo"));
  EXPECT_THAT(r.out, HasSubstr("Examples:"));
  EXPECT_THAT(r.out, HasSubstr("GIL"));
}

TEST_F(PrimesCommandTest, VersionPrintsCrewAndTheVersion) {
  const CommandResult r = run_crew({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::MatchesRegex("crew [0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

TEST_F(PrimesCommandTest, CtrlCStopsTheRunAndExits130) {
  ChildProcess child({crew_cli(), "primes", "--below", "1e9", "--engine", "thread"},
                     {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());
  wait_until_busy(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted: "));
  EXPECT_THAT(r.err, HasSubstr("of 1,000,000,000 numbers checked"));
  EXPECT_THAT(r.err, HasSubstr("Wall time: "));
  EXPECT_THAT(r.out, Not(HasSubstr("answer")));
  expect_group_gone(child.pid());
}

TEST_F(PrimesCommandTest, CtrlCOnTheSerialEngineStopsPromptly) {
  ChildProcess child({crew_cli(), "primes", "--below", "1e10", "--engine", "serial"},
                     {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());
  wait_until_busy(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted: "));
  expect_group_gone(child.pid());
}

TEST_F(PrimesCommandTest, CtrlCWithJsonReportsTheExactPartialSum) {
  ChildProcess child({crew_cli(), "primes", "--below", "1e9", "--json"},
                     {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());
  wait_until_busy(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(10s);
  ASSERT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted: "));
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("interrupted"), true);
  EXPECT_TRUE(doc.at("answer").is_null());
  const auto checked = doc.at("numbers_checked").get<std::int64_t>();
  EXPECT_LT(checked, 1'000'000'000);
  // The numbers checked are a prefix of the input, so the partial sum is exactly checkable.
  EXPECT_EQ(doc.at("partial_sum").get<std::int64_t>(), workloads::sum_primes_below(checked));
  expect_group_gone(child.pid());
}

TEST_F(PrimesCommandTest, SigtermStopsTheRunAndExits143) {
  ChildProcess child({crew_cli(), "primes", "--below", "1e9"}, {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());  // SIGTERM is blocked in the same call
  wait_until_busy(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGTERM), 0);
  const CommandResult r = child.wait(10s);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted: "));
  expect_group_gone(child.pid());
}

TEST_F(PrimesCommandTest, SecondCtrlCExitsAtOnceWhileAChunkStillRuns) {
  // One chunk of a billion numbers: the first Ctrl-C's graceful stop would wait for it for many
  // minutes, so only the second Ctrl-C can end this run within the bound.
  ChildProcess child(
      {crew_cli(), "primes", "--below", "1e10", "--workers", "1", "--chunksize", "1e9"},
      {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());
  // The chunk must be running: a stop that comes before it starts ends the run at once.
  wait_until_busy(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  // Two signals sent back to back could merge into one pending SIGINT; wait until the watcher took
  // the first.
  wait_until_sigint_taken(child.pid());
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, HasSubstr("SIGINT again: exiting at once"));
  expect_group_gone(child.pid());
}

}  // namespace
}  // namespace crew::testing
