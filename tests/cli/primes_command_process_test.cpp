// crew-test-label: process
// Tests of `crew primes --engine process` as a user runs it: the answer, the workers' report in
// --json, --task-timeout and --max-tasks-per-child, and Ctrl-C sent to the whole process group the
// way a terminal sends it. Each test runs the binary named by $CREW_CLI, which forks workers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crew/workloads/primes.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr std::int64_t kSumBelow1e6 = 37'550'402'023;

class PrimesProcessEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
};

struct GroupMember {
  pid_t pid = 0;
  char state = '?';  // 'R', 'S', 'Z' (zombie: exited, not yet reaped), …
};

// Every process whose process group is `group`, from /proc/*/stat (field 5, pgrp).
std::vector<GroupMember> group_members(pid_t group) {
  std::vector<GroupMember> members;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string text;
    try {
      std::ifstream stat(entry.path() / "stat");
      text.assign(std::istreambuf_iterator<char>(stat), std::istreambuf_iterator<char>());
    } catch (const std::ios_base::failure&) {
      continue;  // it exited while we read (read() fails with ESRCH, libstdc++ throws)
    }
    // The command name (field 2) may hold spaces and ')': count fields from the last ')'.
    const std::size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;  // gone while we read
    std::istringstream fields(text.substr(paren + 1));
    char state = '?';
    long long parent = 0;
    long long pgrp = 0;
    if (!(fields >> state >> parent >> pgrp)) continue;
    if (pgrp == group) members.push_back({static_cast<pid_t>(std::stoll(name)), state});
  }
  return members;
}

std::string describe(const std::vector<GroupMember>& members) {
  std::string text;
  for (const GroupMember& m : members) {
    text += std::to_string(m.pid) + " (" + m.state + ") ";
  }
  return text;
}

// Polls /proc until `pid`'s main thread has SIGINT blocked: from then on a SIGINT waits for the
// CLI's watcher thread instead of killing the process by default, so sending one is not a race.
void wait_until_sigint_blocked(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((signal_set(pid, "SigBlk") & signal_bit(SIGINT)) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crew never blocked SIGINT";
    std::this_thread::sleep_for(1ms);
  }
}

// Polls /proc until `workers` processes of crew's group other than crew itself have each used
// `cpu`: the pool's worker processes exist and are checking numbers.
void wait_until_workers_busy(pid_t crew_pid, std::size_t workers,
                             std::chrono::milliseconds cpu = 100ms) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    std::size_t busy = 0;
    for (const GroupMember& m : group_members(crew_pid)) {
      if (m.pid != crew_pid && cpu_time(m.pid) >= cpu) ++busy;
    }
    if (busy >= workers) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crew's workers never got busy";
    std::this_thread::sleep_for(5ms);
  }
}

TEST_F(PrimesProcessEngineTest, TextShowsTheArticlesAnswerAndTheWorkersCpu) {
  const CommandResult r = run_crew({"primes", "--engine", "process", "--workers", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sum of primes below 1,000,000 = 37,550,402,023\n"));
  EXPECT_THAT(r.out, HasSubstr("answer: 37550402023\n"));
  EXPECT_THAT(r.out, HasSubstr("engine: process, workers: 2 (--workers), chunksize: auto (7,813)"));
  EXPECT_THAT(r.out, HasSubstr("processes: 2 workers started, 0 replaced (0 crashed, 0 timed out); "
                               "128 chunks"));
  EXPECT_THAT(r.out, HasSubstr("Wall time: "));
  // The workers were reaped inside the timed block, so their CPU is in the %%time block.
  EXPECT_THAT(r.out, HasSubstr("Workers' CPU (child processes): user "));
  EXPECT_THAT(r.out, Not(HasSubstr("Workers' CPU (child processes): user 0 ns")));
  EXPECT_EQ(r.err, "") << "no fork-with-threads warning, no progress bar on a pipe";
}

TEST_F(PrimesProcessEngineTest, JsonHasTheAnswerAndEveryWorker) {
  const CommandResult r = run_crew({"primes", "--engine", "process", "--workers", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), kSumBelow1e6);
  EXPECT_EQ(doc.at("engine"), "process");
  EXPECT_EQ(doc.at("workers").get<std::int64_t>(), 2);
  EXPECT_EQ(doc.at("chunksize"), "auto");
  EXPECT_EQ(doc.at("interrupted"), false);
  EXPECT_EQ(doc.at("numbers_checked").get<std::int64_t>(), 1'000'000);
  EXPECT_TRUE(doc.at("task_timeout_ms").is_null());
  EXPECT_TRUE(doc.at("max_tasks_per_child").is_null());
  EXPECT_EQ(doc.at("chunks_total").get<std::int64_t>(), 128);
  EXPECT_EQ(doc.at("chunks_done").get<std::int64_t>(), 128);
  EXPECT_GT(doc.at("timing").at("children_user_s").get<double>(), 0.0);

  const nlohmann::json& stats = doc.at("process_stats");
  const nlohmann::json& workers = stats.at("workers");
  ASSERT_TRUE(workers.is_array());
  ASSERT_EQ(workers.size(), 2u) << workers.dump();
  std::int64_t tasks = 0;
  double cpu = 0;
  for (const nlohmann::json& worker : workers) {
    const auto pid = worker.at("pid").get<pid_t>();
    EXPECT_GT(pid, 0);
    EXPECT_FALSE(std::filesystem::exists("/proc/" + std::to_string(pid)))
        << "worker " << pid << " outlived crew";
    tasks += worker.at("tasks").get<std::int64_t>();
    cpu += worker.at("cpu_seconds").get<double>();
    EXPECT_GT(worker.at("peak_rss_kib").get<std::int64_t>(), 0);
    EXPECT_EQ(worker.at("exit"), "exited with status 0");
  }
  EXPECT_EQ(tasks, 128) << "every chunk was one task of one worker";
  EXPECT_GT(cpu, 0.0);

  const nlohmann::json& chunks = stats.at("chunks");
  EXPECT_EQ(chunks.at("count").get<std::int64_t>(), 128);
  EXPECT_EQ(chunks.at("recorded").get<std::int64_t>(), 128);
  EXPECT_EQ(chunks.at("items").get<std::int64_t>(), 1'000'000);
  EXPECT_GT(chunks.at("worker_wall_s").get<double>(), 0.0);
  EXPECT_GT(chunks.at("worker_cpu_s").get<double>(), 0.0);
  EXPECT_EQ(stats.at("crashes").get<std::int64_t>(), 0);
  EXPECT_EQ(stats.at("timeouts").get<std::int64_t>(), 0);
  EXPECT_EQ(stats.at("replacements").get<std::int64_t>(), 0);
}

TEST_F(PrimesProcessEngineTest, MaxTasksPerChildReplacesWorkersWithoutLosingAChunk) {
  const CommandResult r = run_crew(
      {"primes", "--engine", "process", "--workers", "2", "--max-tasks-per-child", "10", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), kSumBelow1e6);
  EXPECT_EQ(doc.at("max_tasks_per_child").get<std::int64_t>(), 10);
  const nlohmann::json& workers = doc.at("process_stats").at("workers");
  // 128 chunks, at most 10 per worker: at least 13 workers.
  ASSERT_GE(workers.size(), 13u) << workers.dump();
  std::int64_t tasks = 0;
  for (const nlohmann::json& worker : workers) {
    EXPECT_LE(worker.at("tasks").get<std::int64_t>(), 10) << worker.dump();
    tasks += worker.at("tasks").get<std::int64_t>();
  }
  EXPECT_EQ(tasks, 128);
  EXPECT_EQ(doc.at("process_stats").at("replacements").get<std::size_t>(), workers.size() - 2);
  EXPECT_THAT(workers.at(0).at("exit").get<std::string>(), HasSubstr("retired after 10 tasks"));
}

TEST_F(PrimesProcessEngineTest, TaskTimeoutRunsOneNumberPerChunkAndSaysSo) {
  const CommandResult r = run_crew({"primes", "--below", "1e4", "--engine", "process", "--workers",
                                    "2", "--task-timeout", "1.5s", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("answer").get<std::int64_t>(), workloads::sum_primes_below(10'000));
  EXPECT_EQ(doc.at("task_timeout_ms").get<std::int64_t>(), 1500);
  // With a timeout crew's automatic chunk size is 1: the timeout is per number.
  EXPECT_EQ(doc.at("chunks_total").get<std::int64_t>(), 10'000);
  EXPECT_EQ(doc.at("process_stats").at("chunks").at("count").get<std::int64_t>(), 10'000);
  EXPECT_EQ(doc.at("process_stats").at("timeouts").get<std::int64_t>(), 0);
}

TEST_F(PrimesProcessEngineTest, TaskTimeoutWithChunksizeIsShownInTheText) {
  const CommandResult r =
      run_crew({"primes", "--engine", "process", "--workers", "2", "--chunksize", "1e4",
                "--task-timeout", "500ms", "--max-tasks-per-child", "50"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("answer: 37550402023\n"));
  EXPECT_THAT(r.out, HasSubstr("chunksize: 10,000, task timeout: 500 ms, max tasks per child: 50"));
  EXPECT_THAT(r.out, HasSubstr("100 chunks"));
}

TEST_F(PrimesProcessEngineTest, CtrlCStopsTheWorkersPrintsWhatWasDoneAndExits130) {
  ChildProcess child(
      {crew_cli(), "primes", "--below", "1e10", "--engine", "process", "--workers", "2"},
      {.own_process_group = true});
  const pid_t group = child.pid();
  wait_until_sigint_blocked(child.pid());
  wait_until_workers_busy(child.pid(), 2);
  ASSERT_EQ(kill(-group, SIGINT), 0);  // as a terminal's ^C: the whole group, workers included
  const CommandResult r = child.wait(60s);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 130) << r.err;
  // 1e10 numbers in chunks of 65,536 (the automatic maximum): 152,588 chunks.
  EXPECT_THAT(r.err, ContainsRegex("interrupted: [0-9,]+ of 152,588 chunks done \\([0-9,]+ of "
                                   "10,000,000,000 numbers checked; sum of the primes below "));
  EXPECT_THAT(r.err, HasSubstr("engine: process, workers: 2"));
  EXPECT_THAT(r.err, HasSubstr("Wall time: "));
  EXPECT_THAT(r.err, Not(HasSubstr("Workers' CPU (child processes): user 0 ns")));
  EXPECT_THAT(r.out, Not(HasSubstr("answer")));
  // crew reaps its workers and the zygote before it exits: nothing of the group is left, not even
  // a zombie.
  const std::vector<GroupMember> left = group_members(group);
  EXPECT_TRUE(left.empty()) << "left behind: " << describe(left);
  errno = 0;
  EXPECT_EQ(kill(-group, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(PrimesProcessEngineTest, CtrlCWithJsonReportsWholeChunksAndTheExactPartialSum) {
  ChildProcess child(
      {crew_cli(), "primes", "--below", "1e10", "--engine", "process", "--workers", "2", "--json"},
      {.own_process_group = true});
  wait_until_sigint_blocked(child.pid());
  wait_until_workers_busy(child.pid(), 2);
  ASSERT_EQ(kill(-child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(60s);
  ASSERT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, ContainsRegex("^interrupted: [0-9,]+ of 152,588 chunks done \\([0-9,]+ of "
                                   "10,000,000,000 numbers checked\\)\n$"));
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("interrupted"), true);
  EXPECT_TRUE(doc.at("answer").is_null());
  EXPECT_EQ(doc.at("chunks_total").get<std::int64_t>(), 152'588);
  const auto chunks_done = doc.at("chunks_done").get<std::int64_t>();
  const auto checked = doc.at("numbers_checked").get<std::int64_t>();
  EXPECT_GT(chunks_done, 0) << "the workers were busy before the SIGINT";
  EXPECT_LT(chunks_done, 152'588);
  EXPECT_EQ(checked, chunks_done * 65'536) << "whole chunks, a prefix of the input";
  EXPECT_EQ(doc.at("partial_sum").get<std::int64_t>(), workloads::sum_primes_below(checked));
  // Every worker, including those the stop killed mid-chunk, was reaped before the report.
  for (const nlohmann::json& worker : doc.at("process_stats").at("workers")) {
    EXPECT_FALSE(worker.at("exit").is_null()) << worker.dump();
  }
  EXPECT_TRUE(group_members(child.pid()).empty());
}

TEST_F(PrimesProcessEngineTest, WorkersExitWhenCrewDiesAtOnce) {
  // What a second Ctrl-C does (the watcher's _exit), without the race between two signals and
  // the prompt first stop: crew ends abruptly and never reaps its workers, which must notice and
  // exit by themselves. The largest chunks (2^20 numbers near 1e10: many seconds each) keep the
  // workers inside a chunk, where no read of their socket can tell them.
  ChildProcess child({crew_cli(), "primes", "--below", "1e10", "--engine", "process", "--workers",
                      "2", "--chunksize", "1048576"},
                     {.own_process_group = true});
  const pid_t group = child.pid();
  wait_until_sigint_blocked(child.pid());
  wait_until_workers_busy(child.pid(), 2);
  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);  // crew alone, not its group
  // wait() returns once every holder of crew's stdout and stderr is gone: the workers and the
  // zygote inherited them, so this bound is also theirs.
  const CommandResult r = child.wait(30s);
  EXPECT_FALSE(r.timed_out) << "a worker or the zygote kept crew's output open";
  EXPECT_EQ(r.term_signal, SIGKILL);
  // Orphans are reaped by init, in its own time: a zombie has exited, anything else has not.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<GroupMember> alive;
  for (;;) {
    alive.clear();
    for (const GroupMember& m : group_members(group)) {
      if (m.state != 'Z') alive.push_back(m);
    }
    if (alive.empty() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(alive.empty()) << "still running: " << describe(alive);
}

}  // namespace
}  // namespace crew::testing
