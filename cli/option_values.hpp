// Hostile command-line values: what an error message may echo of them, and the empty value that
// no option takes. main applies both to every command, so no option's parser has to remember.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace crew::cli {

// Values up to this many bytes are echoed whole in messages; longer ones are shortened.
inline constexpr std::size_t kMaxEchoedBytes = 64;
// No message line is longer than this (after escaping), whatever it echoes.
inline constexpr std::size_t kMaxMessageBytes = 1024;

// `value` as a message may echo it: whole up to kMaxEchoedBytes, else its first 60 bytes (never
// cutting a UTF-8 character) and "… (131,072 bytes)". Not escaped. Thread safety: safe.
[[nodiscard]] std::string shortened(std::string_view value);

// `message` made safe to print on a terminal as one line: every echo of a command-line argument
// longer than kMaxEchoedBytes (a whole argument, or the value of --name=value) is shortened;
// control characters, C1 and invisible format characters and invalid UTF-8 are escaped as fmt's
// "{:?}" does (\x1b, \n, \u{202e}); the result is cut at kMaxMessageBytes. Quotes, backslashes and
// valid UTF-8 text (×, …) are kept. Thread safety: safe.
[[nodiscard]] std::string printable_message(std::string_view message,
                                            const std::vector<std::string_view>& arguments);

// The usage error for the first "--name=" in `arguments` (before a bare "--"): CLI11 would read it
// as "--name" and take the next argument as its value. Empty when there is none.
// Thread safety: safe.
[[nodiscard]] std::string empty_value_after_equals(const std::vector<std::string_view>& arguments);

// Makes every option and positional of `command` that takes a value refuse an empty one ("" or
// --name=): CLI11 then reports "--workers: an empty value is not allowed …" as a usage error.
// Without it an empty string would read as "not given" and select the default silently.
// Call after the options are added. Thread safety: not safe (modifies `command`).
void refuse_empty_values(CLI::App& command);

}  // namespace crew::cli
