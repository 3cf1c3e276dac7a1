// crew-test-label: concurrency
// The fetch job's building blocks, against crew::LatencyServer on loopback: local_urls,
// reserve_file_descriptors, Fetcher and fetch_with_event_loop (bodies, faults, retries,
// keep-alive, stop, 1,000 transfers in flight). FetchOptions and URL checks:
// fetch_options_test.cpp; the engines of fetch_urls: fetch_engines_test.cpp; hostile peers:
// fetch_hostile_test.cpp. No test leaves this machine: every URL is a numeric loopback
// address of a server the test started itself.
#include "crew/workloads/fetch.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "crew/latency_server.hpp"
#include "support/fetch_support.hpp"
#include "support/leak_guard.hpp"

namespace crew::workloads {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using crew::testing::closed_port;
using crew::testing::contains;
using crew::testing::first_error;
using crew::testing::lower;
using crew::testing::start_server;
using crew::testing::StopWhenStalled;
using crew::testing::url;

// --- helpers (the shared ones are in support/fetch_support.hpp) ----------------------------------

std::string expected_body(std::size_t size) {
  std::string body(size, '\0');
  LatencyServer::fill_body(0, body);
  return body;
}

FetchOptions with_body() {
  FetchOptions options;
  options.keep_body = true;
  options.timeout = 30s;
  return options;
}

// Asserts that `result` is the complete, correct body of a LatencyServer URL of `size` bytes.
void expect_body(const FetchResult& result, std::size_t size) {
  EXPECT_TRUE(result.ok()) << result.url << ": " << result.error;
  EXPECT_EQ(result.status, 200) << result.url;
  EXPECT_EQ(result.bytes, size) << result.url;
  EXPECT_EQ(result.attempts, 1) << result.url;
  EXPECT_GE(result.seconds, 0.0) << result.url;
  ASSERT_EQ(result.body.size(), size) << result.url;
  // Byte by byte, so the first wrong byte is the one reported.
  for (std::size_t i = 0; i < size; ++i) {
    ASSERT_EQ(result.body[i], LatencyServer::body_byte(i)) << result.url << " at byte " << i;
  }
}

constexpr std::size_t kBodySizes[] = {0, 1, 31, 32, 50 * 1024, 1024 * 1024};

std::vector<std::string> body_urls(std::uint16_t port) {
  std::vector<std::string> urls;
  for (const std::size_t size : kBodySizes) {
    urls.push_back(url(port, "/body?bytes=" + std::to_string(size)));
  }
  return urls;
}

// The URLs of every fault the fetch functions must turn into a result, between two good ones.
struct FaultUrls {
  std::vector<std::string> urls;
  std::size_t ok_first = 0, not_found = 1, server_error = 2, reset = 3, stall = 4, refused = 5,
              tls = 6, ok_last = 7;
};

// The TLS case speaks https:// to the plain-HTTP LatencyServer: it answers the ClientHello with
// a 400 at once, so the client fails its handshake (not a timeout).
FaultUrls fault_urls(std::uint16_t port) {
  FaultUrls faults;
  faults.urls = {
      url(port, "/first?bytes=100"),
      url(port, "/?status=404"),
      url(port, "/?status=500"),
      url(port, "/?reset=1&bytes=100KiB"),
      url(port, "/?stall=1&bytes=1KiB"),
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/",
      "https://127.0.0.1:" + std::to_string(port) + "/",
      url(port, "/last?bytes=200"),
  };
  return faults;
}

// A short timeout, so the stalled URL fails fast; the good ones answer in milliseconds.
FetchOptions fault_options() {
  FetchOptions options;
  options.timeout = 1000ms;
  options.connect_timeout = 5000ms;
  options.keep_body = true;
  return options;
}

void expect_faults(const FaultUrls& faults, const std::vector<FetchResult>& results) {
  ASSERT_EQ(results.size(), faults.urls.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].url, faults.urls[i]);
    if (i != faults.ok_first && i != faults.ok_last) {
      EXPECT_FALSE(results[i].ok()) << results[i].url;
      EXPECT_FALSE(results[i].error.empty()) << results[i].url;
      EXPECT_EQ(results[i].attempts, 1) << results[i].url << ": " << results[i].error;
    }
  }
  expect_body(results[faults.ok_first], 100);
  expect_body(results[faults.ok_last], 200);

  const FetchResult& not_found = results[faults.not_found];
  EXPECT_EQ(not_found.status, 404);
  EXPECT_TRUE(contains(not_found.error, "404")) << not_found.error;
  const FetchResult& server_error = results[faults.server_error];
  EXPECT_EQ(server_error.status, 500);
  EXPECT_TRUE(contains(server_error.error, "500")) << server_error.error;
  // Headers and half the body arrived, then a reset: a failure, whatever words curl uses.
  EXPECT_LT(results[faults.reset].bytes, 100u * 1024u) << results[faults.reset].error;
  EXPECT_TRUE(contains(lower(results[faults.stall].error), "timeout"))
      << results[faults.stall].error;
  EXPECT_EQ(results[faults.refused].status, 0) << results[faults.refused].error;
  const std::string tls_error = lower(results[faults.tls].error);
  EXPECT_TRUE(contains(tls_error, "ssl") || contains(tls_error, "tls")) << tls_error;
  EXPECT_EQ(results[faults.tls].status, 0) << tls_error;
}

// --- local_urls, reserve_file_descriptors
// ---------------------------------------------------------

TEST(LocalUrlsTest, ArticlePathsThenNumberedPages) {
  const auto paths = article_url_paths();
  ASSERT_EQ(paths.size(), 13u);
  EXPECT_EQ(paths.front(), "/");
  EXPECT_EQ(paths[1], "/3/");
  EXPECT_EQ(paths[2], "/3/whatsnew/3.7.html");
  EXPECT_EQ(paths.back(), "/3/faq/index.html");
  for (const std::string_view path : paths) EXPECT_TRUE(path.starts_with('/')) << path;

  const std::vector<std::string> urls = local_urls(8080, 15);
  ASSERT_EQ(urls.size(), 15u);
  for (std::size_t i = 0; i < 13; ++i) {
    EXPECT_EQ(urls[i], "http://127.0.0.1:8080" + std::string(paths[i]));
  }
  EXPECT_EQ(urls[13], "http://127.0.0.1:8080/page/14");
  EXPECT_EQ(urls[14], "http://127.0.0.1:8080/page/15");
  for (const std::string& u : urls) EXPECT_EQ(check_fetch_url(u), "") << u;

  EXPECT_TRUE(local_urls(8080, 0).empty());
  const std::vector<std::string> three = local_urls(1, 3);
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[2], "http://127.0.0.1:1/3/whatsnew/3.7.html");
}

TEST(LocalUrlsTest, ServeEveryArticlePath) {
  auto server = start_server({.body_bytes = 64});
  Fetcher fetcher(with_body());
  for (const std::string& u : local_urls(server->port(), 15)) {
    const FetchResult result = fetcher.fetch(u);
    EXPECT_EQ(result.url, u);
    expect_body(result, 64);
  }
}

// Restores RLIMIT_NOFILE's soft limit when a test that lowered it ends.
class SoftLimitGuard {
 public:
  SoftLimitGuard() { ::getrlimit(RLIMIT_NOFILE, &saved_); }
  ~SoftLimitGuard() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  SoftLimitGuard(const SoftLimitGuard&) = delete;
  SoftLimitGuard& operator=(const SoftLimitGuard&) = delete;
  const rlimit& saved() const { return saved_; }

 private:
  rlimit saved_{};
};

TEST(ReserveFileDescriptorsTest, SmallRequestIsGrantedQuietly) {
  for (const std::size_t request : {std::size_t{1}, std::size_t{10}}) {
    const FdBudget budget = reserve_file_descriptors(request);
    EXPECT_EQ(budget.concurrency, request);
    EXPECT_FALSE(budget.raised);
    EXPECT_EQ(budget.warning, "");
  }
}

TEST(ReserveFileDescriptorsTest, RaisesTheSoftLimitWhenNeeded) {
  const SoftLimitGuard guard;
  if (guard.saved().rlim_max != RLIM_INFINITY && guard.saved().rlim_max < 2048) {
    GTEST_SKIP() << "hard RLIMIT_NOFILE " << guard.saved().rlim_max << " is too low";
  }
  rlimit lowered = guard.saved();
  lowered.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  const FdBudget budget = reserve_file_descriptors(1000);
  EXPECT_EQ(budget.concurrency, 1000u);
  EXPECT_TRUE(budget.raised);
  EXPECT_EQ(budget.warning, "");
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_GE(now.rlim_cur, 1000 + kFdReserve);
  EXPECT_LE(now.rlim_cur, guard.saved().rlim_max);
}

TEST(ReserveFileDescriptorsTest, ClampsAboveTheHardLimit) {
  const SoftLimitGuard guard;
  if (guard.saved().rlim_max == RLIM_INFINITY || guard.saved().rlim_max > 50'000'000) {
    GTEST_SKIP() << "no finite hard RLIMIT_NOFILE to exceed";
  }
  const std::size_t request = static_cast<std::size_t>(guard.saved().rlim_max) + 1000;
  const FdBudget budget = reserve_file_descriptors(request);
  EXPECT_LT(budget.concurrency, request);
  EXPECT_LE(budget.concurrency, static_cast<std::size_t>(guard.saved().rlim_max));
  EXPECT_FALSE(budget.warning.empty());
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_LE(now.rlim_cur, guard.saved().rlim_max);
}

// --- Fetcher -------------------------------------------------------------------------------------

TEST(FetcherTest, BodiesMatchTheServerByteForByte) {
  auto server = start_server();
  Fetcher fetcher(with_body());
  const std::vector<std::string> urls = body_urls(server->port());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const FetchResult result = fetcher.fetch(urls[i]);
    EXPECT_EQ(result.url, urls[i]);
    expect_body(result, kBodySizes[i]);
  }
}

TEST(FetcherTest, WithoutKeepBodyCountsBytesOnly) {
  auto server = start_server();
  FetchOptions options;
  options.timeout = 30s;
  Fetcher fetcher(options);
  const FetchResult result = fetcher.fetch(url(server->port(), "/?bytes=3MiB"));
  EXPECT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.bytes, 3u << 20);
  EXPECT_EQ(result.body, "");
}

TEST(FetcherTest, KeepsOneConnectionAlive) {
  auto server = start_server({.body_bytes = 10});
  Fetcher fetcher;
  for (int i = 0; i < 5; ++i) {
    const FetchResult result = fetcher.fetch(url(server->port(), "/n/" + std::to_string(i)));
    EXPECT_TRUE(result.ok()) << result.error;
    EXPECT_EQ(result.bytes, 10u);
  }
  EXPECT_EQ(server->stats().requests, 5u);
  EXPECT_EQ(server->stats().connections, 1u);
}

TEST(FetcherTest, MovesAndChangesThreads) {
  auto server = start_server({.body_bytes = 7});
  Fetcher first(with_body());
  Fetcher moved(std::move(first));
  EXPECT_TRUE(moved.options().keep_body);
  FetchResult result;
  std::thread([&] { result = moved.fetch(url(server->port(), "/a")); }).join();
  expect_body(result, 7);
  Fetcher assigned;
  assigned = std::move(moved);
  expect_body(assigned.fetch(url(server->port(), "/b")), 7);
}

TEST(FetcherTest, FetchesOverIpv6Loopback) {
  LatencyServer server({.bind_address = "::1", .body_bytes = 8});
  try {
    server.start();
  } catch (const std::system_error& error) {
    GTEST_SKIP() << "no IPv6 loopback here: " << error.what();
  }
  Fetcher fetcher(with_body());
  const std::string u = "http://[::1]:" + std::to_string(server.port()) + "/v6";
  const FetchResult result = fetcher.fetch(u);
  EXPECT_EQ(result.url, u);
  expect_body(result, 8);
}

TEST(FetcherTest, EveryFaultBecomesThatUrlsResult) {
  auto server = start_server();
  const FaultUrls faults = fault_urls(server->port());
  // One Fetcher for all: a failed URL must not spoil the handle for the next one.
  Fetcher fetcher(fault_options());
  std::vector<FetchResult> results;
  const auto start = Clock::now();
  for (const std::string& u : faults.urls) results.push_back(fetcher.fetch(u));
  EXPECT_LT(Clock::now() - start, 30s);
  expect_faults(faults, results);
}

TEST(FetcherTest, RefusesSchemesOtherThanHttpAndHttps) {
  // libcurl speaks file://, ftp:// and more; a fetcher of web pages must not read local files.
  Fetcher fetcher(with_body());
  const FetchResult result = fetcher.fetch("file:///proc/self/status");
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.body, "");
  EXPECT_EQ(result.bytes, 0u);
}

TEST(FetcherTest, RetriesTransientFailuresOnly) {
  auto server = start_server({.body_bytes = 10});
  FetchOptions options;
  options.retries = 2;
  options.retry_backoff = 50ms;
  options.timeout = 10s;
  Fetcher fetcher(options);

  const FetchResult unavailable = fetcher.fetch(url(server->port(), "/?status=503"));
  EXPECT_FALSE(unavailable.ok());
  EXPECT_EQ(unavailable.status, 503);
  EXPECT_EQ(unavailable.attempts, 3);
  EXPECT_EQ(server->stats().requests, 3u);
  // Both backoff waits (50 ms, then 100 ms) are part of the URL's time.
  EXPECT_GE(unavailable.seconds, 0.15);

  const FetchResult not_found = fetcher.fetch(url(server->port(), "/?status=404"));
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.attempts, 1) << "404 is not transient";
  EXPECT_EQ(server->stats().requests, 4u);

  const FetchResult reset = fetcher.fetch(url(server->port(), "/?reset=1&bytes=64KiB"));
  EXPECT_FALSE(reset.ok());
  EXPECT_EQ(reset.attempts, 3) << reset.error;

  const FetchResult refused = fetcher.fetch("http://127.0.0.1:" + std::to_string(closed_port()));
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.attempts, 3) << refused.error;

  const FetchResult fine = fetcher.fetch(url(server->port(), "/"));
  EXPECT_TRUE(fine.ok()) << fine.error;
  EXPECT_EQ(fine.attempts, 1);
}

TEST(FetcherTest, RetriesATimeout) {
  auto server = start_server();
  FetchOptions options;
  options.retries = 1;
  options.retry_backoff = 10ms;
  options.timeout = 300ms;
  Fetcher fetcher(options);
  const FetchResult stalled = fetcher.fetch(url(server->port(), "/?stall=1&bytes=1KiB"));
  EXPECT_TRUE(contains(lower(stalled.error), "timeout")) << stalled.error;
  EXPECT_EQ(stalled.attempts, 2);
  EXPECT_GE(stalled.seconds, 0.6);
  EXPECT_LT(stalled.seconds, 10.0);
}

TEST(FetcherTest, StopAbandonsAStalledTransfer) {
  auto server = start_server();
  FetchOptions options;
  options.timeout = 60s;
  options.retries = 3;
  Fetcher fetcher(options);
  StopWhenStalled stopper(*server, 0, 1);
  const FetchResult result =
      fetcher.fetch(url(server->port(), "/?stall=1&bytes=1KiB"), stopper.token());
  const auto returned = Clock::now();
  ASSERT_TRUE(stopper.saw_stall());
  EXPECT_LT(returned - stopper.stopped_at(), 10s);
  EXPECT_EQ(result.error, kNotFetchedStopped);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.attempts, 1) << "a stop is not retried";

  // Stopped before the start: nothing is tried.
  std::stop_source stopped;
  stopped.request_stop();
  const std::uint64_t requests = server->stats().requests;
  const FetchResult never = fetcher.fetch(url(server->port(), "/"), stopped.get_token());
  EXPECT_EQ(never.error, kNotFetchedStopped);
  EXPECT_EQ(never.attempts, 0);
  EXPECT_EQ(server->stats().requests, requests);
}

// --- fetch_with_event_loop -----------------------------------------------------------------------

TEST(EventLoopTest, ResultsAreInInputOrderWithTheirBodies) {
  auto server = start_server();
  std::vector<std::string> urls = body_urls(server->port());
  // The first URL answers last: results still come back in input order.
  urls.insert(urls.begin(), url(server->port(), "/slow?latency=300ms&bytes=5"));
  EventLoopStats stats;
  const std::vector<FetchResult> results =
      fetch_with_event_loop(urls, 8, with_body(), FetchControl{}, &stats);
  ASSERT_EQ(results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) EXPECT_EQ(results[i].url, urls[i]);
  expect_body(results[0], 5);
  for (std::size_t i = 0; i < std::size(kBodySizes); ++i)
    expect_body(results[i + 1], kBodySizes[i]);
  EXPECT_GE(stats.connections_opened, 1u);
  EXPECT_LE(stats.connections_opened, urls.size());
  EXPECT_GE(stats.peak_in_flight, 1u);
  EXPECT_LE(stats.peak_in_flight, urls.size());
}

TEST(EventLoopTest, NoUrlsNoResults) {
  EventLoopStats stats;
  bool progressed_past_zero = false;
  FetchControl control;
  control.on_progress = [&](std::size_t done, std::size_t) { progressed_past_zero |= done > 0; };
  EXPECT_TRUE(fetch_with_event_loop({}, 4, FetchOptions{}, control, &stats).empty());
  EXPECT_FALSE(progressed_past_zero);
  EXPECT_EQ(stats.connections_opened, 0u);
  EXPECT_EQ(stats.peak_in_flight, 0u);
}

TEST(EventLoopTest, EveryFaultBecomesThatUrlsResult) {
  auto server = start_server();
  const FaultUrls faults = fault_urls(server->port());
  const auto start = Clock::now();
  const std::vector<FetchResult> results = fetch_with_event_loop(faults.urls, 4, fault_options());
  EXPECT_LT(Clock::now() - start, 30s);
  expect_faults(faults, results);
}

TEST(EventLoopTest, RetriesTransientFailuresOnly) {
  auto server = start_server({.body_bytes = 10});
  FetchOptions options;
  options.retries = 2;
  options.retry_backoff = 50ms;
  options.timeout = 10s;
  const std::vector<std::string> urls = {
      url(server->port(), "/?status=503"),
      url(server->port(), "/?status=404"),
      url(server->port(), "/?status=429"),
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/",
      url(server->port(), "/fine"),
  };
  const std::vector<FetchResult> results = fetch_with_event_loop(urls, 5, options);
  ASSERT_EQ(results.size(), urls.size());
  EXPECT_EQ(results[0].status, 503);
  EXPECT_EQ(results[0].attempts, 3);
  EXPECT_GE(results[0].seconds, 0.15) << "backoff waits are part of the time";
  EXPECT_EQ(results[1].status, 404);
  EXPECT_EQ(results[1].attempts, 1) << "404 is not transient";
  EXPECT_EQ(results[2].status, 429);
  EXPECT_EQ(results[2].attempts, 3);
  EXPECT_FALSE(results[3].ok());
  EXPECT_EQ(results[3].attempts, 3) << results[3].error;
  EXPECT_TRUE(results[4].ok()) << results[4].error;
  EXPECT_EQ(results[4].attempts, 1);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_FALSE(results[i].ok()) << urls[i];
  // 3 + 1 + 3 + 0 + 1 requests reached the server.
  EXPECT_EQ(server->stats().requests, 8u);
}

TEST(EventLoopTest, ReusesConnectionsAndKeepsToTheConcurrency) {
  auto server = start_server({.latency = 20ms, .body_bytes = 100});
  std::vector<std::string> urls;
  for (int i = 0; i < 200; ++i) urls.push_back(url(server->port(), "/n/" + std::to_string(i)));
  EventLoopStats stats;
  std::vector<std::pair<std::size_t, std::size_t>> progress;  // unguarded: never concurrent
  FetchControl control;
  control.on_progress = [&](std::size_t done, std::size_t total) {
    progress.emplace_back(done, total);
  };
  const std::vector<FetchResult> results = fetch_with_event_loop(
      urls, 10, FetchOptions{.timeout = std::chrono::milliseconds(30'000)}, control, &stats);
  ASSERT_EQ(results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    EXPECT_EQ(results[i].url, urls[i]);
    EXPECT_TRUE(results[i].ok()) << results[i].error;
    EXPECT_EQ(results[i].bytes, 100u);
  }
  EXPECT_LE(stats.connections_opened, 20u);
  EXPECT_GE(stats.connections_opened, 1u);
  EXPECT_EQ(stats.peak_in_flight, 10u);
  const LatencyServerStats served = server->stats();
  EXPECT_EQ(served.requests, 200u);
  EXPECT_LE(served.connections, 20u);
  EXPECT_LE(served.peak_in_flight, 10u);

  ASSERT_EQ(progress.size(), urls.size()) << "one call per URL";
  for (std::size_t i = 0; i < progress.size(); ++i) {
    EXPECT_EQ(progress[i].first, i + 1);
    EXPECT_EQ(progress[i].second, urls.size());
  }
}

TEST(EventLoopTest, StopEndsTheRunAndEveryUrlHasAResult) {
  auto server = start_server();
  std::vector<std::string> urls = {url(server->port(), "/fast?bytes=10")};
  for (int i = 0; i < 6; ++i) {
    urls.push_back(url(server->port(), "/stall/" + std::to_string(i) + "?stall=1&bytes=1KiB"));
  }
  FetchOptions options;
  options.timeout = 30s;
  // 3 at once: the fast URL and two stalls, then the fast one's slot goes to a third stall.
  StopWhenStalled stopper(*server, 1, 3);
  FetchControl control;
  control.stop = stopper.token();
  const std::vector<FetchResult> results = fetch_with_event_loop(urls, 3, options, control);
  const auto returned = Clock::now();
  ASSERT_TRUE(stopper.saw_stall());
  EXPECT_LT(returned - stopper.stopped_at(), 10s);
  ASSERT_EQ(results.size(), urls.size());
  EXPECT_TRUE(results[0].ok()) << results[0].error;
  EXPECT_EQ(results[0].bytes, 10u);
  std::size_t never_started = 0;
  for (std::size_t i = 1; i < urls.size(); ++i) {
    EXPECT_EQ(results[i].url, urls[i]);
    EXPECT_EQ(results[i].error, kNotFetchedStopped) << urls[i];
    if (results[i].attempts == 0) ++never_started;
  }
  EXPECT_EQ(never_started, 3u) << "6 stalls, 3 of them in flight when stopped";
}

TEST(EventLoopTest, ThousandTransfersInFlightAtOnce) {
  constexpr std::size_t kUrls = 1000;
  // Both ends of every connection are in this process: the client's socket and the server's.
  const FdBudget budget = reserve_file_descriptors(2 * kUrls);
  if (budget.concurrency < 2 * kUrls) {
    GTEST_SKIP() << "the open-file limit allows only " << budget.concurrency << ": "
                 << budget.warning;
  }
  // Long enough that every request is still waiting when the last one is sent, even under a
  // sanitizer on a busy machine; the test waits it out once.
  auto server = start_server({.latency = 3s, .body_bytes = 100});
  std::vector<std::string> urls;
  urls.reserve(kUrls);
  for (std::size_t i = 0; i < kUrls; ++i) {
    urls.push_back(url(server->port(), "/n/" + std::to_string(i)));
  }
  FetchOptions options;
  options.timeout = 60s;
  options.connect_timeout = 30s;
  options.keep_body = true;
  EventLoopStats stats;
  const auto start = Clock::now();
  const std::vector<FetchResult> results =
      fetch_with_event_loop(urls, kUrls, options, FetchControl{}, &stats);
  const auto elapsed = Clock::now() - start;
  ASSERT_EQ(results.size(), kUrls);
  std::size_t good = 0;
  for (std::size_t i = 0; i < kUrls; ++i) {
    EXPECT_EQ(results[i].url, urls[i]);
    if (results[i].ok() && results[i].body == expected_body(100)) ++good;
  }
  EXPECT_EQ(good, kUrls) << "first error: " << first_error(results);
  EXPECT_EQ(stats.peak_in_flight, kUrls);
  EXPECT_LE(stats.connections_opened, kUrls);
  EXPECT_GE(elapsed, 3s);
  // One after another they would take 1,000 × 3 s.
  EXPECT_LT(elapsed, 60s);

  EXPECT_EQ(server->stats().peak_in_flight, kUrls);
  EXPECT_EQ(server->stats().requests, kUrls);
  // What the issue asks to see: /stats, over HTTP, says 1,000 were in flight at once.
  Fetcher fetcher(with_body());
  const FetchResult stats_page = fetcher.fetch(url(server->port(), "/stats"));
  ASSERT_TRUE(stats_page.ok()) << stats_page.error;
  const nlohmann::json served = nlohmann::json::parse(stats_page.body);
  EXPECT_EQ(served["peak_in_flight"], kUrls);
  EXPECT_EQ(served["requests"], kUrls);
}

}  // namespace
}  // namespace crew::workloads
