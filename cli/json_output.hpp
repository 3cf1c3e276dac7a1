// JSON for the crew command's --json output: the pieces several commands share. ordered_json keeps
// keys in the order written, so the output reads in the order docs/cli.md lists the fields.
#pragma once

#include <crew/timing.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace crew::cli {

// A Timing as JSON, durations in seconds (double), field by field as docs/cli.md describes:
//   {"wall_s", "user_s", "sys_s", "children_user_s", "children_sys_s", "cpu_s", "parallelism",
//    "peak_rss_bytes", "peak_rss_is_block_peak"}
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] nlohmann::ordered_json timing_to_json(const Timing& timing);

// One JSON document on one line, ending in '\n': what --json prints on stdout. Strings that are not
// valid UTF-8 are written with U+FFFD instead of throwing.
[[nodiscard]] std::string json_line(const nlohmann::ordered_json& document);

}  // namespace crew::cli
