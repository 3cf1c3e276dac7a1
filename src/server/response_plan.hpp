// What one response of crew::LatencyServer will be (a Plan), from the server's defaults and a
// request's query overrides (latency=, bytes=, status=, reset=, stall=).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace crew::detail {

// What one response will be.
struct Plan {
  unsigned status = 200;
  std::chrono::milliseconds latency{0};
  std::uint64_t body_bytes = 0;  // the generated body, when text is unset
  std::optional<std::string> text;
  std::string_view content_type = "text/plain";
  // Header fields to add, each ending in CRLF ("Allow: GET, HEAD\r\n" on a 405).
  std::string_view extra_fields;
  bool head = false;
  bool keep_alive = true;
  bool reset = false;
  bool stall = false;
};

// Applies the query's overrides to `plan`. Throws: std::invalid_argument with the 400 message.
void apply_query(std::string_view query, Plan& plan);

// The reason phrase of a status code ("Not Found"), or "Status" for one without its own here.
[[nodiscard]] std::string_view reason_phrase(unsigned status);

}  // namespace crew::detail
