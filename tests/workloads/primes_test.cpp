// Tests for the article's primes job and for parse_count.
#include "crew/workloads/primes.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace crew::workloads {
namespace {

// The message of the std::invalid_argument that fn throws, or "" when it throws none.
template <class F>
std::string invalid_argument_message(F&& fn) {
  try {
    (void)fn();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

TEST(PrimesTest, IsPrimeMatchesTheArticle) {
  EXPECT_EQ(is_prime(-7), 0);
  EXPECT_EQ(is_prime(0), 0);
  EXPECT_EQ(is_prime(1), 0);
  EXPECT_EQ(is_prime(2), 2);
  EXPECT_EQ(is_prime(3), 3);
  EXPECT_EQ(is_prime(4), 0);
  EXPECT_EQ(is_prime(5), 5);
  EXPECT_EQ(is_prime(9), 0);
  EXPECT_EQ(is_prime(25), 0);
  EXPECT_EQ(is_prime(49), 0);
  EXPECT_EQ(is_prime(97), 97);
  EXPECT_EQ(is_prime(7919), 7919);
  EXPECT_EQ(is_prime(1'000'000'007), 1'000'000'007);
  EXPECT_EQ(is_prime(999'999'999), 0);
  // The largest prime below kMaxPrimesBelow, and a square of a prime just above √1e10.
  EXPECT_EQ(is_prime(9'999'999'967), 9'999'999'967);
  EXPECT_EQ(is_prime(100'003LL * 100'003LL), 0);
}

TEST(PrimesTest, IsPrimeIsConstexpr) {
  static_assert(is_prime(97) == 97);
  static_assert(is_prime(91) == 0);
  SUCCEED();
}

TEST(PrimesTest, IsPrimeIsDefinedForEveryInt64) {
  // INT64_MAX = 7^2 × 73 × 127 × 337 × 92737 × 649657: answered at i = 7. (A prime that large
  // would take ~5e8 iterations; the i <= x / i form is what keeps that case from overflowing.)
  EXPECT_EQ(is_prime(std::numeric_limits<std::int64_t>::max()), 0);
  EXPECT_EQ(is_prime(std::numeric_limits<std::int64_t>::min()), 0);
  EXPECT_EQ(is_prime(std::numeric_limits<std::int64_t>::max() - 1), 0);
}

TEST(PrimesTest, SumBelowSmallN) {
  EXPECT_EQ(sum_primes_below(0), 0);
  EXPECT_EQ(sum_primes_below(1), 0);
  EXPECT_EQ(sum_primes_below(2), 0);
  EXPECT_EQ(sum_primes_below(3), 2);
  EXPECT_EQ(sum_primes_below(4), 5);
  EXPECT_EQ(sum_primes_below(10), 17);
}

TEST(PrimesTest, SumBelowOneMillionMatchesTheArticle) {
  EXPECT_EQ(sum_primes_below(1'000'000), 37'550'402'023);
}

TEST(PrimesTest, SumBelowTenMillion) { EXPECT_EQ(sum_primes_below(10'000'000), 3'203'324'994'356); }

TEST(PrimesTest, SumInComposes) {
  constexpr std::int64_t kN = 200'000;
  const std::int64_t whole = sum_primes_below(kN);
  for (const std::int64_t k : {std::int64_t{0}, std::int64_t{1}, std::int64_t{3}, std::int64_t{97},
                               std::int64_t{65'536}, kN}) {
    EXPECT_EQ(sum_primes_in(0, k) + sum_primes_in(k, kN), whole) << "k = " << k;
  }
  EXPECT_EQ(sum_primes_in(5, 5), 0);
  // 9'999'999'967 is the only prime in the last 50 below 1e10.
  EXPECT_EQ(sum_primes_in(kMaxPrimesBelow - 50, kMaxPrimesBelow), 9'999'999'967);
}

TEST(PrimesTest, SumRejectsOutOfRangeArguments) {
  EXPECT_EQ(invalid_argument_message([] { return sum_primes_below(-1); }),
            "n must be between 0 and 1e10 (kMaxPrimesBelow), got -1");
  EXPECT_TRUE(contains(
      invalid_argument_message([] { return sum_primes_below(kMaxPrimesBelow + 1); }), "n must be"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return sum_primes_in(-1, 5); }), "begin"));
  EXPECT_TRUE(contains(
      invalid_argument_message([] { return sum_primes_in(0, kMaxPrimesBelow + 1); }), "end"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return sum_primes_in(6, 5); }), "begin"));
}

TEST(PrimesTest, ParseCountAcceptsDigitsSeparatorsAndScientific) {
  EXPECT_EQ(parse_count("0"), 0);
  EXPECT_EQ(parse_count("1000000"), 1'000'000);
  EXPECT_EQ(parse_count("007"), 7);
  EXPECT_EQ(parse_count("1e7"), 10'000'000);
  EXPECT_EQ(parse_count("1E6"), 1'000'000);
  EXPECT_EQ(parse_count("1e+6"), 1'000'000);
  EXPECT_EQ(parse_count("1e10"), 10'000'000'000);
  EXPECT_EQ(parse_count("1.5e3"), 1'500);
  EXPECT_EQ(parse_count("2.5e6"), 2'500'000);
  EXPECT_EQ(parse_count("1000e-3"), 1);
  EXPECT_EQ(parse_count("150e-1"), 15);
  EXPECT_EQ(parse_count("0e999999"), 0);
  EXPECT_EQ(parse_count("10_000_000"), 10'000'000);
  EXPECT_EQ(parse_count("1_0"), 10);
  EXPECT_EQ(parse_count("1,000,000"), 1'000'000);
  EXPECT_EQ(parse_count("12,345"), 12'345);
  EXPECT_EQ(parse_count("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_count("9.223372036854775807e18"), std::numeric_limits<std::int64_t>::max());
}

TEST(PrimesTest, ParseCountRejectsWithClearMessages) {
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count(""); }), "empty"));
  EXPECT_EQ(invalid_argument_message([] { return parse_count("abc"); }),
            "expected a whole number such as 1000000, 1_000_000 or 1e6, got \"abc\"");
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("-5"); }), "≥ 0"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1.5"); }), "whole"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1.5e0"); }), "whole"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1500e-3"); }), "whole"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1e-99999"); }), "whole"));
  EXPECT_EQ(invalid_argument_message([] { return parse_count("1e20"); }),
            "\"1e20\" is too large: the largest accepted number is 9223372036854775807 (about "
            "9.2e18)");
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("9223372036854775808"); }),
                       "large"));
  EXPECT_TRUE(
      contains(invalid_argument_message([] { return parse_count("1e99999999999"); }), "large"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1,5"); }), "three"));
  EXPECT_TRUE(contains(invalid_argument_message([] { return parse_count("1,0000"); }), "three"));
  for (const char* bad : {"0x10", " 5", "5 ", "+5", "1e", "1.", ".5", "1__0", "_1", "1_", "1_e5",
                          "1e5_0", "1,000_000", "1e-", "٣", "1e1.5", "1ee5", "inf", "nan"}) {
    EXPECT_FALSE(invalid_argument_message([bad] { return parse_count(bad); }).empty()) << bad;
  }
}

TEST(PrimesTest, ParseCountInRangeNamesTheOptionAndBounds) {
  EXPECT_EQ(parse_count_in_range("1e7", 0, kMaxPrimesBelow, "--below"), 10'000'000);
  EXPECT_EQ(parse_count_in_range("1e10", 0, kMaxPrimesBelow, "--below"), kMaxPrimesBelow);
  EXPECT_EQ(invalid_argument_message(
                [] { return parse_count_in_range("1e11", 0, kMaxPrimesBelow, "--below"); }),
            "--below must be between 0 and 1e10, got 1e11");
  EXPECT_EQ(invalid_argument_message(
                [] { return parse_count_in_range("1e20", 0, kMaxPrimesBelow, "--below"); }),
            "--below must be between 0 and 1e10, got 1e20");
  EXPECT_EQ(invalid_argument_message(
                [] { return parse_count_in_range("-5", 0, kMaxPrimesBelow, "--below"); }),
            "--below must be between 0 and 1e10, got -5");
  EXPECT_EQ(invalid_argument_message([] { return parse_count_in_range("0", 1, 25'000'000, "-n"); }),
            "-n must be between 1 and 2.5e7, got 0");
  EXPECT_EQ(
      invalid_argument_message([] { return parse_count_in_range("abc", 0, 12'345, "--below"); }),
      "--below: expected a whole number such as 1000000, 1_000_000 or 1e6, got \"abc\"");
  EXPECT_TRUE(contains(
      invalid_argument_message([] { return parse_count_in_range("5", 10, 1, "--below"); }), "min"));
}

}  // namespace
}  // namespace crew::workloads
