// Tests of the crew command given hostile option values: an error line never echoes a whole long
// argument or raw control bytes, and an empty value is refused like any malformed one, for every
// option of every command. Each test runs the binary named by $CREW_CLI in a child process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <regex>
#include <string>
#include <vector>

#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Under Linux's 128 KiB limit for one argument (MAX_ARG_STRLEN).
constexpr std::size_t kLong = 100'000;

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Every byte of `text` a terminal prints as it is: no C0 control but the final newline, no DEL.
bool has_control_bytes(const std::string& text) {
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}

class OptionValuesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }

  // Runs crew, expects a usage error (exit 2, one short line on stderr) and returns that line.
  static std::string usage_line(const std::vector<std::string>& args) {
    const CommandResult r = run_crew(args);
    EXPECT_EQ(r.exit_code, 2) << r.err.substr(0, 300);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(count_lines(r.err), 1u);
    EXPECT_LE(r.err.size(), 1200u) << "a usage error is one short line";
    EXPECT_FALSE(has_control_bytes(r.err)) << r.err.substr(0, 300);
    return r.err;
  }
};

TEST_F(OptionValuesTest, LongValueIsShortenedWithItsSize) {
  const std::string err = usage_line({"primes", "--below", std::string(kLong, '7') + "x"});
  EXPECT_THAT(err, HasSubstr("--below"));
  EXPECT_THAT(err, HasSubstr("\"" + std::string(60, '7') + "… (100,001 bytes)\""));
  EXPECT_THAT(err, HasSubstr("(run 'crew primes --help' for usage)"));
}

TEST_F(OptionValuesTest, LongValueAfterAnEqualsSignIsShortened) {
  const std::string err = usage_line({"serve", "--bind=" + std::string(kLong, '9')});
  EXPECT_THAT(err, HasSubstr(std::string(60, '9') + "… (100,000 bytes)"));
}

TEST_F(OptionValuesTest, LongItemOfAListIsShortened) {
  const std::string err =
      usage_line({"bench", "cpu", "--engines", "thread," + std::string(kLong, 'e')});
  EXPECT_THAT(err, HasSubstr("--engines"));
  EXPECT_THAT(err, HasSubstr(std::string(60, 'e') + "… (100,000 bytes)"));
}

TEST_F(OptionValuesTest, LongUnknownCommandAndOptionAreShortened) {
  EXPECT_THAT(usage_line({std::string(kLong, 'z')}), HasSubstr("… (100,000 bytes)"));
  EXPECT_THAT(usage_line({"fetch", "--" + std::string(kLong, 'o')}),
              HasSubstr("… (100,002 bytes)"));
}

TEST_F(OptionValuesTest, ThousandsOfUnexpectedArgumentsMakeOneBoundedLine) {
  std::vector<std::string> args = {"primes"};
  for (int i = 0; i < 20'000; ++i) args.push_back(std::to_string(i));
  const std::string err = usage_line(args);
  EXPECT_THAT(err, HasSubstr("not expected"));
  EXPECT_THAT(err, HasSubstr("byte message)"));
}

// As many long arguments as a command line holds (1.7 MB): each is shortened where echoed, and
// the work is one pass over the message (it was one pass per argument: seconds of CPU, growing
// with the square of the command line, to print one usage line).
TEST_F(OptionValuesTest, ThousandsOfLongUnexpectedArgumentsMakeOneBoundedLine) {
  std::vector<std::string> args = {"primes"};
  for (int i = 0; i < 24'000; ++i) args.push_back(std::string(65, 'x') + std::to_string(i));
  const std::string err = usage_line(args);
  // CLI11 lists the last one first: "xxx…23999", 70 bytes.
  EXPECT_THAT(err, HasSubstr("not expected: " + std::string(60, 'x') + "… (70 bytes) x"));
  EXPECT_THAT(err, HasSubstr("byte message)"));
}

TEST_F(OptionValuesTest, ControlBytesAreEscaped) {
  EXPECT_THAT(usage_line({"primes", "--below", "1\x1b[31mred"}), HasSubstr("\"1\\x1b[31mred\""));
  EXPECT_THAT(usage_line({"primes", "--bogus=\x1b]0;title\x07"}),
              HasSubstr("--bogus=\\x1b]0;title\\x07"));
  EXPECT_THAT(usage_line({"bo\x1b[2Jgus"}), HasSubstr("unknown command \"bo\\x1b[2Jgus\""));
  EXPECT_THAT(usage_line({"primes", "--engine", "a\nb\rc\td"}), HasSubstr("a\\nb\\rc\\td"));
}

TEST_F(OptionValuesTest, InvisibleAndInvalidTextIsEscapedButUtf8IsKept) {
  // U+202E turns the rest of a line around on a terminal; 0x9B is a C1 CSI in Latin-1; 0xFF is
  // never UTF-8. "µ" is plain text.
  const std::string err = usage_line({"primes", "--engine",
                                      "µ\xe2\x80\xae"
                                      "x\xc2\x9b"
                                      "y\xff"
                                      "z"});
  EXPECT_THAT(err, HasSubstr("\"µ\\u202ex\\x9by\\xffz\""));
}

TEST_F(OptionValuesTest, QuotesAndBackslashesAreEchoedAsTyped) {
  EXPECT_THAT(usage_line({"primes", "--engine", "a\"b\\c"}), HasSubstr("got \"a\"b\\c\""));
}

// Every option that --help lists with a value (today's and any added later) refuses "": the
// refusal is CLI11's, at parse time, before the rest of the command line matters.
TEST_F(OptionValuesTest, EveryOptionInHelpRefusesAnEmptyValue) {
  const std::regex option_with_value("\\n  (--[a-z][a-z-]*) [A-Z]");
  std::size_t checked = 0;
  for (const char* command : {"primes", "fetch", "bench", "demo", "serve"}) {
    const CommandResult help = run_crew({command, "--help"});
    ASSERT_EQ(help.exit_code, 0) << command;
    for (std::sregex_iterator it(help.out.begin(), help.out.end(), option_with_value), end;
         it != end; ++it) {
      const std::string option = (*it)[1];
      const std::string err = usage_line({command, option, ""});
      EXPECT_THAT(err, HasSubstr(option + ": an empty value is not allowed")) << command;
      ++checked;
    }
  }
  EXPECT_GE(checked, 30u) << "the help's format changed: this test no longer finds the options";
}

// One option given an empty value: the command line around it is otherwise valid and quick, so
// that an empty value taken as "not given" runs (and passes) instead of being refused.
struct EmptyCase {
  const char* name;
  std::vector<std::string> args;  // ends with the option and "" (or a positional "")
  const char* option;             // what the message names

  friend void PrintTo(const EmptyCase& c, std::ostream* os) {
    *os << "crew";
    for (const std::string& arg : c.args) *os << ' ' << (arg.empty() ? "''" : arg);
  }
};

class EmptyValueTest : public OptionValuesTest, public ::testing::WithParamInterface<EmptyCase> {};

TEST_P(EmptyValueTest, IsRefusedNamingTheOption) {
  const std::string err = usage_line(GetParam().args);
  EXPECT_THAT(err, HasSubstr(std::string(GetParam().option) + ": an empty value is not allowed"));
}

TEST_P(EmptyValueTest, IsRefusedAfterAnEqualsSign) {
  std::vector<std::string> args = GetParam().args;
  if (!args[args.size() - 2].starts_with("--")) GTEST_SKIP() << "a positional has no --name=";
  const std::string option = args[args.size() - 2];
  args.pop_back();
  args.back() = option + "=";
  EXPECT_THAT(usage_line(args), HasSubstr(option));
}

// CLI11 reads "--name=" as "--name" and takes the next argument as the value: "--below= 100"
// would run with 100, and "--urls-file= --json" would read a file named "--json".
TEST_F(OptionValuesTest, EqualsSignWithNothingAfterItNeverTakesTheNextArgument) {
  EXPECT_THAT(usage_line({"primes", "--below=", "100"}),
              HasSubstr("--below: an empty value is not allowed"));
  EXPECT_THAT(usage_line({"primes", "--below", "100", "--engine=", "thread"}),
              HasSubstr("--engine: an empty value is not allowed"));
  EXPECT_THAT(usage_line({"fetch", "--urls-file=", "--json"}),
              HasSubstr("--urls-file: an empty value is not allowed"));
  EXPECT_THAT(usage_line({"fetch", "--local", "1", "--max-filesize=", "--json"}),
              HasSubstr("--max-filesize: an empty value is not allowed"));
  // After "--" every word is a positional, and "a=" or "--a=b" is a value like any other.
  const CommandResult r = run_crew({"primes", "--below", "100", "--", "--x="});
  EXPECT_THAT(r.err, Not(HasSubstr("an empty value")));
}

// Quick bases: 100 numbers; a local server of 1 URL at no latency; a synthetic sweep of 4 tasks
// on one worker.
const std::vector<std::string> kPrimes = {"primes", "--below", "100"};
const std::vector<std::string> kPrimesProcess = {"primes", "--below", "100", "--engine", "process"};
const std::vector<std::string> kFetch = {"fetch", "--local", "1", "--latency", "0"};
const std::vector<std::string> kBench = {"bench", "synthetic", "--cpu-us", "1", "--tasks", "4"};

std::vector<std::string> with(std::vector<std::string> base, std::vector<std::string> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

INSTANTIATE_TEST_SUITE_P(
    EveryOption, EmptyValueTest,
    ::testing::Values(
        EmptyCase{"PrimesBelow", {"primes", "--below", ""}, "--below"},
        EmptyCase{"PrimesEngine", with(kPrimes, {"--engine", ""}), "--engine"},
        EmptyCase{"PrimesWorkers", with(kPrimes, {"--workers", ""}), "--workers"},
        EmptyCase{"PrimesChunksize", with(kPrimes, {"--chunksize", ""}), "--chunksize"},
        EmptyCase{"PrimesTaskTimeout", with(kPrimesProcess, {"--task-timeout", ""}),
                  "--task-timeout"},
        EmptyCase{"PrimesMaxTasksPerChild", with(kPrimesProcess, {"--max-tasks-per-child", ""}),
                  "--max-tasks-per-child"},
        EmptyCase{"FetchUrl", {"fetch", ""}, "urls"},
        EmptyCase{"FetchUrlsFile", {"fetch", "--urls-file", ""}, "--urls-file"},
        EmptyCase{"FetchLocal", {"fetch", "--local", ""}, "--local"},
        EmptyCase{"FetchLatency", {"fetch", "--local", "1", "--latency", ""}, "--latency"},
        EmptyCase{"FetchBody", with(kFetch, {"--body", ""}), "--body"},
        EmptyCase{"FetchEngine", with(kFetch, {"--engine", ""}), "--engine"},
        EmptyCase{"FetchWorkers", with(kFetch, {"--workers", ""}), "--workers"},
        EmptyCase{"FetchConnectTimeout", with(kFetch, {"--connect-timeout", ""}),
                  "--connect-timeout"},
        EmptyCase{"FetchTimeout", with(kFetch, {"--timeout", ""}), "--timeout"},
        EmptyCase{"FetchRetries", with(kFetch, {"--retries", ""}), "--retries"},
        EmptyCase{"BenchJob", {"bench", ""}, "job"},
        EmptyCase{"BenchBelow", {"bench", "cpu", "--below", ""}, "--below"},
        EmptyCase{"BenchUrls", {"bench", "io", "--urls", ""}, "--urls"},
        EmptyCase{"BenchLatency", {"bench", "io", "--latency", ""}, "--latency"},
        EmptyCase{"BenchBody", {"bench", "io", "--body", ""}, "--body"},
        EmptyCase{"BenchCpuUs", {"bench", "synthetic", "--cpu-us", ""}, "--cpu-us"},
        EmptyCase{"BenchIoUs", with(kBench, {"--repeat", "1", "--max-workers", "1", "--io-us", ""}),
                  "--io-us"},
        EmptyCase{"BenchTasks", {"bench", "synthetic", "--tasks", ""}, "--tasks"},
        EmptyCase{"BenchEngines",
                  with(kBench, {"--repeat", "1", "--max-workers", "1", "--engines", ""}),
                  "--engines"},
        EmptyCase{"BenchMaxWorkers",
                  with(kBench, {"--repeat", "1", "--engines", "thread", "--max-workers", ""}),
                  "--max-workers"},
        EmptyCase{"BenchRepeat",
                  with(kBench, {"--max-workers", "1", "--engines", "thread", "--repeat", ""}),
                  "--repeat"},
        EmptyCase{"BenchPlot",
                  with(kBench, {"--repeat", "1", "--max-workers", "1", "--engines", "thread",
                                "--plot", ""}),
                  "--plot"},
        EmptyCase{"DemoBelow", {"demo", "--below", ""}, "--below"},
        EmptyCase{"ServePort", {"serve", "--port", ""}, "--port"},
        EmptyCase{"ServeLatency", {"serve", "--latency", ""}, "--latency"},
        EmptyCase{"ServeBody", {"serve", "--body", ""}, "--body"},
        EmptyCase{"ServeBind", {"serve", "--bind", ""}, "--bind"}),
    [](const ::testing::TestParamInfo<EmptyCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace crew::testing
