// parse_milliseconds: the duration syntax shared by --task-timeout, crew serve and the latency
// server's query.
#include "crew/duration.hpp"

#include <gtest/gtest.h>

#include "support/leak_guard.hpp"

namespace crew {
namespace {

std::int64_t ms(std::string_view text) {
  const ParsedDuration parsed = parse_milliseconds(text);
  EXPECT_EQ(parsed.error, DurationError::kNone) << text;
  return parsed.milliseconds;
}

DurationError error(std::string_view text) { return parse_milliseconds(text).error; }

TEST(DurationTest, ReadsUnitsAndBareMilliseconds) {
  EXPECT_EQ(ms("0"), 0);
  EXPECT_EQ(ms("250"), 250);
  EXPECT_EQ(ms("250ms"), 250);
  EXPECT_EQ(ms("2s"), 2000);
  EXPECT_EQ(ms("1.5s"), 1500);
  EXPECT_EQ(ms("0.125s"), 125);
  EXPECT_EQ(ms("1.000ms"), 1) << "zeros past the millisecond are fine";
  EXPECT_EQ(ms("2.5000s"), 2500);
  EXPECT_EQ(ms("999999999999s"), 999'999'999'999'000);
}

TEST(DurationTest, SaysWhatIsWrong) {
  for (const char* bad : {"", "s", "ms", "abc", "-5", "5h", "1.", ".5s", "1..5s", "1e3", " 5"}) {
    EXPECT_EQ(error(bad), DurationError::kSyntax) << bad;
  }
  EXPECT_EQ(error("1.5ms"), DurationError::kFinerThanMillisecond);
  EXPECT_EQ(error("0.0005s"), DurationError::kFinerThanMillisecond);
  EXPECT_EQ(error("1234567890123"), DurationError::kTooLarge);
}

}  // namespace
}  // namespace crew
