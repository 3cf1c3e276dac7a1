// Durations written the way crew's commands and the latency server take them: "250ms", "2s",
// "1.5s", or a bare number of milliseconds. One parser, so every option and query reads alike.
#pragma once

#include <cstdint>
#include <string_view>

namespace crew {

enum class DurationError {
  kNone,
  kSyntax,                // not a number with an optional "ms" or "s" unit
  kFinerThanMillisecond,  // e.g. "1.5ms" or "0.0005s"
  kTooLarge,              // more than 12 digits before the unit
};

struct ParsedDuration {
  std::int64_t milliseconds = 0;
  DurationError error = DurationError::kNone;
};

// Parses `text` into whole milliseconds (never negative); callers apply their own limits and
// word their own messages from `error`. Throws: nothing. Thread safety: safe.
[[nodiscard]] ParsedDuration parse_milliseconds(std::string_view text) noexcept;

}  // namespace crew
