#include "crew/duration.hpp"

#include <algorithm>
#include <charconv>

namespace crew {
namespace {

bool all_digits(std::string_view text) {
  return std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

ParsedDuration parse_milliseconds(std::string_view text) noexcept {
  std::string_view number = text;
  std::int64_t scale = 1;  // milliseconds per unit
  if (number.ends_with("ms")) {
    number.remove_suffix(2);
  } else if (number.ends_with('s')) {
    number.remove_suffix(1);
    scale = 1000;
  }
  const std::size_t dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  const std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
  if (whole.empty() || !all_digits(whole) || !all_digits(fraction) ||
      (dot != std::string_view::npos && fraction.empty())) {
    return {.error = DurationError::kSyntax};
  }
  // 12 digits times 1000 cannot overflow 64 bits; more is past any limit a caller has.
  if (whole.size() > 12) return {.error = DurationError::kTooLarge};
  std::int64_t units = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), units);
  // The fraction, in milliseconds: only whole milliseconds are meaningful ("1.5s" yes, "1.5ms" no).
  std::int64_t fraction_ms = 0;
  std::int64_t place = scale;
  for (char c : fraction) {
    place /= 10;
    if (place == 0) {
      if (c != '0') return {.error = DurationError::kFinerThanMillisecond};
      continue;
    }
    fraction_ms += (c - '0') * place;
  }
  return {.milliseconds = units * scale + fraction_ms};
}

}  // namespace crew
