// One libcurl transfer as crew makes it, shared by Fetcher (fetcher.cpp) and the event loop
// (fetch_event_loop.cpp): the options every easy handle gets, the per-transfer state its
// callbacks fill, and how an attempt's outcome becomes a FetchResult's error.
#pragma once

#include <curl/curl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>

#include "crew/workloads/fetch.hpp"

namespace crew::detail {

using FetchClock = std::chrono::steady_clock;

// curl_global_init, once per process. Throws: std::runtime_error when it fails.
void ensure_curl_initialized();

// One transfer's state, shared by the easy-handle callbacks.
struct Transfer {
  std::uint64_t bytes = 0;
  std::string body;
  bool keep_body = false;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};

  void reset() {
    bytes = 0;
    body.clear();
    error_buffer[0] = '\0';
  }
};

// Options that every transfer of crew gets, whatever the URL.
void configure(CURL* easy, const workloads::FetchOptions& options, Transfer& transfer);

// Whether an attempt that ended with `code` and `status` is worth another (curl --retry's list).
[[nodiscard]] bool is_transient(CURLcode code, long status);

// The error text of an attempt that ended with `code` and `status`; empty for a success.
[[nodiscard]] std::string describe_failure(CURLcode code, long status, const Transfer& transfer,
                                           const workloads::FetchOptions& options);

// Sleeps for `duration` unless `stop` is requested first. Returns false when stopped.
bool sleep_unless_stopped(std::chrono::milliseconds duration, std::stop_token stop);

[[nodiscard]] double seconds_since(FetchClock::time_point start);

}  // namespace crew::detail
