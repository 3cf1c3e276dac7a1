// JSON for the crew command's --json output: the pieces several commands share. ordered_json keeps
// keys in the order written, so the output reads in the order docs/cli.md lists the fields.
#pragma once

#include <crew/process_stats.hpp>
#include <crew/timing.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace crew::cli {

// A Timing as JSON, durations in seconds (double), field by field as docs/cli.md describes:
//   {"wall_s", "user_s", "sys_s", "children_user_s", "children_sys_s", "cpu_s", "parallelism",
//    "peak_rss_bytes", "peak_rss_is_block_peak"}
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] nlohmann::ordered_json timing_to_json(const Timing& timing);

// What a ProcessPool measured, as docs/cli.md describes:
//   {"workers": [{"pid", "tasks", "cpu_seconds", "peak_rss_kib", "exit"}, …],
//    "chunks": {"count", "recorded", "items", "worker_wall_s", "worker_cpu_s"},
//    "crashes", "timeouts", "replacements"}
// "exit" is null for a worker still alive. The chunk sums cover the recorded chunks (the first
// ProcessPoolStats::kMaxChunkRecords); "count" includes the others.
// Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] nlohmann::ordered_json process_stats_to_json(const ProcessPoolStats& stats);

// One JSON document on one line, ending in '\n': what --json prints on stdout. Strings that are not
// valid UTF-8 are written with U+FFFD instead of throwing.
[[nodiscard]] std::string json_line(const nlohmann::ordered_json& document);

}  // namespace crew::cli
