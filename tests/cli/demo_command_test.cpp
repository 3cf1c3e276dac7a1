// Tests of `crew demo` as `make demo` runs it. Each test runs the binary named by $CREW_CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

CommandResult crew(std::vector<std::string> args) {
  const char* cli = std::getenv("CREW_CLI");
  args.insert(args.begin(), cli == nullptr ? "" : cli);
  return run_command(args, 100s);
}

class DemoCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(std::getenv("CREW_CLI"), nullptr) << "CREW_CLI must name the crew binary";
  }
};

TEST_F(DemoCommandTest, RunsBothEnginesAndChecksTheKnownAnswer) {
  const CommandResult r = crew({"demo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("== serial: the article's for loop =="));
  EXPECT_THAT(r.out, HasSubstr("== thread: ThreadPool("));
  EXPECT_THAT(r.out, HasSubstr("both engines agree: 37,550,402,023, the known sum"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("speed-up: thread [0-9]+\\.[0-9]+x over serial"));
  EXPECT_THAT(r.out, HasSubstr("GIL"));
  EXPECT_EQ(r.err, "");
}

TEST_F(DemoCommandTest, OtherSizesNeedOnlyAgreement) {
  const CommandResult r = crew({"demo", "--below", "12345"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("both engines agree: "));
}

TEST_F(DemoCommandTest, BadBelowIsAUsageError) {
  const CommandResult r = crew({"demo", "--below", "lots"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("crew: error: --below"));
  EXPECT_THAT(r.err, HasSubstr("crew demo --help"));
}

}  // namespace
}  // namespace crew::testing
