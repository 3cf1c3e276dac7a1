// crew-test-label: process
// Tests of `crew demo` as `make demo` runs it. Each test runs the binary named by $CREW_CLI, whose
// process run forks workers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

class DemoCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(std::getenv("CREW_CLI"), nullptr) << "CREW_CLI must name the crew binary";
  }
};

// Issue 11, item 13: the demo printed "process 2.63× … efficiency 132 %" from one run each and
// explained it. Its speed-ups now come from repeated runs with their 95 % interval, an efficiency
// above 100 % is called noise, and "as fast as threads" is said only within the noise.
void expect_figures_from_repeated_runs(const std::string& out) {
  EXPECT_THAT(out, HasSubstr("Each engine again, quietly, until its mean is known to"));
  EXPECT_THAT(out, ::testing::ContainsRegex("serial +[0-9.]+ [^ ]+ ± [0-9.]+ % over [0-9]+ runs, "
                                            "CPU/wall [0-9.]+"));
  for (const char* engine : {"thread", "process"}) {
    EXPECT_THAT(out, ::testing::ContainsRegex(std::string("speed-up: ") + engine +
                                              " [0-9.]+x over serial with [0-9]+ workers? \\(95 % "
                                              "CI [0-9.]+–[0-9.]+; efficiency [0-9]+%"))
        << out;
  }
  const std::regex efficiency("efficiency ([0-9]+)%([^\n]*)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), efficiency);
       it != std::sregex_iterator(); ++it) {
    if (std::stoi((*it)[1]) > 100) {
      EXPECT_THAT((*it)[2].str(), HasSubstr("above 100% is noise, not a finding")) << (*it)[0];
    }
  }
  if (out.find("processes are as fast as threads") != std::string::npos) {
    EXPECT_THAT(out, HasSubstr("within the noise of the thread runs'"));
  }
}

TEST_F(DemoCommandTest, RunsTheThreeEnginesAndChecksTheKnownAnswer) {
  const CommandResult r = run_crew({"demo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::size_t serial = r.out.find("== serial: the article's for loop ==");
  const std::size_t thread = r.out.find("== thread: ThreadPool(");
  const std::size_t process = r.out.find("== process: ProcessPool(");
  ASSERT_NE(serial, std::string::npos) << r.out;
  ASSERT_NE(thread, std::string::npos) << r.out;
  ASSERT_NE(process, std::string::npos) << r.out;
  EXPECT_LT(serial, thread);
  EXPECT_LT(thread, process);
  const std::size_t io = r.out.find("crew demo, part 2: the article's IO job");
  ASSERT_NE(io, std::string::npos) << r.out;
  EXPECT_LT(process, io);
  // The process run's %%time block counts its reaped workers' CPU.
  EXPECT_THAT(r.out.substr(process, io - process),
              ::testing::Not(HasSubstr("Workers' CPU (child processes): user 0 ns")));
  EXPECT_THAT(r.out, HasSubstr("all three engines agree: 37,550,402,023, the known sum"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("speed-up: thread [0-9]+\\.[0-9]+x over serial"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("speed-up: process [0-9]+\\.[0-9]+x over serial"));
  expect_figures_from_repeated_runs(r.out);
  EXPECT_THAT(r.out, HasSubstr("GIL"));
  EXPECT_THAT(r.out, HasSubstr("multiprocessing.Pool"));
  // Part 2: the 13 URLs, serial then 4 threads, each with its %%time block, and every URL fetched.
  const std::string part2 = r.out.substr(io);
  const std::size_t serial_fetch = part2.find("== serial: for url in urls: fetch(url) ==");
  const std::size_t thread_fetch = part2.find("== thread: ThreadPool(4).map(fetch, urls) ==");
  ASSERT_NE(serial_fetch, std::string::npos) << part2;
  ASSERT_NE(thread_fetch, std::string::npos) << part2;
  EXPECT_LT(serial_fetch, thread_fetch);
  EXPECT_THAT(part2.substr(serial_fetch, thread_fetch - serial_fetch),
              HasSubstr("13 URLs: 13 ok, 0 failed; 650 KiB"));
  EXPECT_THAT(part2.substr(thread_fetch), HasSubstr("13 URLs: 13 ok, 0 failed; 650 KiB"));
  EXPECT_THAT(part2.substr(thread_fetch), HasSubstr("Wall time: "));
  EXPECT_THAT(part2, ::testing::ContainsRegex(
                         "speed-up: thread [0-9]+\\.[0-9]+x over serial with 4 workers"));
  EXPECT_THAT(part2, Not(HasSubstr("failed:")));
  EXPECT_EQ(r.err, "");
}

TEST_F(DemoCommandTest, OtherSizesNeedOnlyAgreement) {
  const CommandResult r = run_crew({"demo", "--below", "12345"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("all three engines agree: "));
}

TEST_F(DemoCommandTest, BadBelowIsAUsageError) {
  const CommandResult r = run_crew({"demo", "--below", "lots"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("crew: error: --below"));
  EXPECT_THAT(r.err, HasSubstr("crew demo --help"));
}

}  // namespace
}  // namespace crew::testing
