// The article's primes job and crew's parser for counts typed on the command line.
#include "crew/workloads/primes.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/core.h>

namespace crew::workloads {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
// More exponent than this only ever means "too large" (or zero, or not whole); clamping keeps the
// arithmetic on it small.
constexpr int kExponentClamp = 1000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

enum class ParseError {
  kNone,
  kEmpty,
  kSyntax,
  kNegative,
  kComma,
  kNotWhole,
  kTooLarge,
};

struct Parsed {
  std::int64_t value = 0;
  ParseError error = ParseError::kNone;
};

// Reads the digits of the integer part starting at `pos`, with '_' or ',' separators, into `out`.
// Returns the error, if any; `pos` is left after the last digit.
ParseError read_integer_part(std::string_view text, std::size_t& pos, std::string& out) {
  char separator = 0;
  std::size_t group = 0;  // digits since the last ','
  bool first_group = true;
  while (pos < text.size()) {
    const char c = text[pos];
    if (is_digit(c)) {
      out += c;
      ++group;
      ++pos;
      continue;
    }
    if (c != '_' && c != ',') break;
    // A separator must sit between two digits.
    if (group == 0 || pos + 1 >= text.size() || !is_digit(text[pos + 1])) {
      return ParseError::kSyntax;
    }
    if (separator != 0 && separator != c) return ParseError::kSyntax;
    separator = c;
    if (c == ',') {
      if (first_group ? group > 3 : group != 3) return ParseError::kComma;
      first_group = false;
    }
    group = 0;
    ++pos;
  }
  if (out.empty()) return ParseError::kSyntax;
  if (separator == ',' && group != 3) return ParseError::kComma;
  return ParseError::kNone;
}

Parsed parse(std::string_view text) {
  if (text.empty()) return {0, ParseError::kEmpty};
  if (text.front() == '-') return {0, ParseError::kNegative};

  std::size_t pos = 0;
  std::string digits;  // integer part, then fractional part: the significand without its point
  if (const ParseError error = read_integer_part(text, pos, digits); error != ParseError::kNone) {
    return {0, error};
  }
  int exponent = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    while (pos < text.size() && is_digit(text[pos])) digits += text[pos++];
    if (pos == start) return {0, ParseError::kSyntax};
    exponent -= static_cast<int>(pos - start);
  }
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    bool negative = false;
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) negative = text[pos++] == '-';
    const std::size_t start = pos;
    int written = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      written = std::min(written * 10 + (text[pos++] - '0'), kExponentClamp);
    }
    if (pos == start) return {0, ParseError::kSyntax};
    exponent += negative ? -written : written;
  }
  if (pos != text.size()) return {0, ParseError::kSyntax};

  // value = digits × 10^exponent, exactly.
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  if (digits.empty()) return {0, ParseError::kNone};
  if (exponent < 0) {
    const auto drop = static_cast<std::size_t>(-exponent);
    if (drop > digits.size() ||
        digits.find_first_not_of('0', digits.size() - drop) != std::string::npos) {
      return {0, ParseError::kNotWhole};
    }
    digits.resize(digits.size() - drop);
  } else {
    // INT64_MAX has 19 digits; anything longer is too large (leading zeros are gone).
    if (digits.size() + static_cast<std::size_t>(exponent) > 19) return {0, ParseError::kTooLarge};
    digits.append(static_cast<std::size_t>(exponent), '0');
  }
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) return {0, ParseError::kTooLarge};
  if (ec != std::errc{} || end != digits.data() + digits.size()) return {0, ParseError::kSyntax};
  return {value, ParseError::kNone};
}

std::string quoted(std::string_view text) { return fmt::format("\"{}\"", text); }

std::string describe(ParseError error, std::string_view text) {
  switch (error) {
    case ParseError::kEmpty:
      return "expected a whole number such as 1000000, 1_000_000 or 1e6, got an empty string";
    case ParseError::kSyntax:
      return fmt::format("expected a whole number such as 1000000, 1_000_000 or 1e6, got {}",
                         quoted(text));
    case ParseError::kNegative:
      return fmt::format("expected a number ≥ 0, got {}", quoted(text));
    case ParseError::kComma:
      return fmt::format(
          "',' may only separate groups of three digits (1,000,000; the decimal point is '.'), "
          "got {}",
          quoted(text));
    case ParseError::kNotWhole:
      return fmt::format("expected a whole number, got {}", quoted(text));
    case ParseError::kTooLarge:
      return fmt::format("{} is too large: the largest accepted number is {} (about 9.2e18)",
                         quoted(text), kInt64Max);
    case ParseError::kNone:
      break;
  }
  return "no error";
}

// A bound as a user would type it: 10000000000 → "1e10", 25000000 → "2.5e7", 12345 → "12345".
std::string compact(std::int64_t value) {
  std::string digits = fmt::format("{}", value);
  if (value <= 0) return digits;
  const std::size_t significant = digits.find_last_not_of('0') + 1;
  const std::size_t zeros = digits.size() - significant;
  if (zeros < 4 || significant > 3) return digits;
  if (significant == 1) return fmt::format("{}e{}", digits[0], digits.size() - 1);
  return fmt::format("{}.{}e{}", digits[0], std::string_view(digits).substr(1, significant - 1),
                     digits.size() - 1);
}

void check_range(std::int64_t value, const char* name) {
  if (value < 0 || value > kMaxPrimesBelow) {
    throw std::invalid_argument(fmt::format("{} must be between 0 and {} (kMaxPrimesBelow), got {}",
                                            name, compact(kMaxPrimesBelow), value));
  }
}

}  // namespace

std::int64_t sum_primes_in(std::int64_t begin, std::int64_t end) {
  check_range(begin, "begin");
  check_range(end, "end");
  if (begin > end) {
    throw std::invalid_argument(
        fmt::format("begin must not exceed end, got begin = {}, end = {}", begin, end));
  }
  std::int64_t sum = 0;
  for (std::int64_t i = begin; i < end; ++i) sum += is_prime(i);
  return sum;
}

std::int64_t sum_primes_below(std::int64_t n) {
  check_range(n, "n");
  return sum_primes_in(0, n);
}

std::int64_t parse_count(std::string_view text) {
  const Parsed parsed = parse(text);
  if (parsed.error != ParseError::kNone) throw std::invalid_argument(describe(parsed.error, text));
  return parsed.value;
}

std::int64_t parse_count_in_range(std::string_view text, std::int64_t min, std::int64_t max,
                                  std::string_view name) {
  if (min < 0 || min > max) {
    throw std::invalid_argument(
        fmt::format("min must be between 0 and max, got min = {}, max = {}", min, max));
  }
  const Parsed parsed = parse(text);
  const bool in_range = parsed.value >= min && parsed.value <= max;
  if (parsed.error == ParseError::kTooLarge || parsed.error == ParseError::kNegative ||
      (parsed.error == ParseError::kNone && !in_range)) {
    // With bounds at hand, "-5" and "1e20" are best answered by the bounds, like "1e11".
    throw std::invalid_argument(fmt::format("{} must be between {} and {}, got {}", name,
                                            compact(min), compact(max), text));
  }
  if (parsed.error != ParseError::kNone) {
    throw std::invalid_argument(fmt::format("{}: {}", name, describe(parsed.error, text)));
  }
  return parsed.value;
}

}  // namespace crew::workloads
