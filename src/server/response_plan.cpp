#include "server/response_plan.hpp"

#include <fmt/format.h>

#include <charconv>
#include <stdexcept>

#include "crew/latency_server.hpp"

namespace crew::detail {
namespace {

bool parse_flag(std::string_view name, std::string_view value) {
  if (value == "1" || value == "true") return true;
  if (value == "0" || value == "false") return false;
  throw std::invalid_argument(
      fmt::format("{} must be 1, 0, true or false, got \"{}\"", name, value));
}

}  // namespace

// Applies the query's overrides to `plan`. Throws: std::invalid_argument with the 400 message.
void apply_query(std::string_view query, Plan& plan) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("query parameter \"{}\" has no value", pair));
    }
    const std::string_view name = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    if (name == "latency") {
      try {
        plan.latency = parse_latency(value);
      } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(fmt::format("latency: {}", error.what()));
      }
    } else if (name == "bytes") {
      try {
        plan.body_bytes = parse_byte_size(value);
      } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(fmt::format("bytes: {}", error.what()));
      }
    } else if (name == "status") {
      unsigned status = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), status);
      if (ec != std::errc() || end != value.data() + value.size() || status < 200 || status > 599) {
        throw std::invalid_argument(
            fmt::format("status must be a number from 200 to 599, got \"{}\"", value));
      }
      plan.status = status;
    } else if (name == "reset") {
      plan.reset = parse_flag(name, value);
    } else if (name == "stall") {
      plan.stall = parse_flag(name, value);
    } else {
      throw std::invalid_argument(fmt::format(
          "unknown query parameter \"{}\" (known: latency, bytes, status, reset, stall)", name));
    }
  }
  if (plan.reset && plan.stall) {
    throw std::invalid_argument("reset=1 and stall=1 cannot be combined");
  }
  const bool no_body = plan.status == 204 || plan.status == 304;
  if ((plan.reset || plan.stall) && (plan.head || plan.body_bytes == 0 || no_body)) {
    throw std::invalid_argument(
        "reset=1 and stall=1 need a GET with a body of at least 1 byte (not status 204 or 304)");
  }
}

std::string_view reason_phrase(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

}  // namespace crew::detail
