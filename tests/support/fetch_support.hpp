// What the fetch tests share (tests/workloads/fetch_test.cpp, fetch_engines_test.cpp,
// tests/cli/fetch_command_test.cpp): loopback URLs, a started LatencyServer, a port where nothing
// listens, and a stop requested once the server holds stalled requests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "crew/workloads/fetch.hpp"

namespace crew::testing {

// ASCII lowercase, for matching error texts whatever their case.
std::string lower(std::string text);
bool contains(std::string_view text, std::string_view part);

// "http://127.0.0.1:<port><target>".
std::string url(std::uint16_t port, std::string_view target);

// A LatencyServer with `options`, started.
std::unique_ptr<LatencyServer> start_server(LatencyServerOptions options = {});

// Waits (up to 2 s) until every other thread of this process sleeps in a system call, so that a
// ProcessPool forked next copies no lock held mid-malloc (see fetch_support.cpp).
void wait_until_other_threads_sleep();

// A loopback port where nothing listens: bound (so the kernel picked a free one), then closed.
std::uint16_t closed_port();

// "<url>: <error>" of the first failed result, or "" when all succeeded.
std::string first_error(const std::vector<workloads::FetchResult>& results);

// Requests a stop once `server` has answered at least `answered` requests and has `in_flight`
// waiting (so the fast URLs are done and stalled ones started), plus a moment for the answered
// results to reach the client. Records when.
class StopWhenStalled {
 public:
  StopWhenStalled(const LatencyServer& server, std::uint64_t answered, std::uint64_t in_flight);
  ~StopWhenStalled();
  StopWhenStalled(const StopWhenStalled&) = delete;
  StopWhenStalled& operator=(const StopWhenStalled&) = delete;

  std::stop_token token() const { return source_.get_token(); }
  // Waits for the stop to have been requested; then whether the stall was seen, and when.
  // Call once the run has returned (before the stop, when the stall never came).
  bool saw_stall();
  std::chrono::steady_clock::time_point stopped_at() const { return stopped_at_; }

 private:
  std::stop_source source_;
  std::atomic<bool> run_returned_{false};
  bool saw_stall_ = false;
  std::chrono::steady_clock::time_point stopped_at_{};
  std::thread thread_;
};

}  // namespace crew::testing
