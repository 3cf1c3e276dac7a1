// crew-test-label: process concurrency
// fetch_urls on each engine (serial, thread, process, event-loop) against crew::LatencyServer on
// loopback: every URL gets its result in input order, bodies intact, faults fail only their URL,
// retries, the workers bound, progress and stop. Fetcher and fetch_with_event_loop themselves:
// fetch_test.cpp. No test leaves this machine: every URL is a numeric loopback address of a
// server the test started itself.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "crew/latency_server.hpp"
#include "crew/workloads/fetch.hpp"
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

// --- per engine ----------------------------------------------------------------------------------

class FetchEngineTest : public ::testing::TestWithParam<FetchEngine> {
 protected:
  FetchEngine engine() const { return GetParam(); }
  // The most transfers the engine may have in flight with `workers`.
  std::size_t bound(std::size_t workers) const {
    return engine() == FetchEngine::kSerial ? 1 : workers;
  }
};

TEST_P(FetchEngineTest, EveryUrlSucceedsInInputOrder) {
  auto server = start_server({.body_bytes = 1000});
  const std::vector<std::string> urls = local_urls(server->port(), 15);
  FetchOptions options;
  options.timeout = 30s;
  const FetchRun run = fetch_urls(urls, engine(), 4, options);
  EXPECT_FALSE(run.stopped);
  ASSERT_EQ(run.results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const FetchResult& result = run.results[i];
    EXPECT_EQ(result.url, urls[i]);
    EXPECT_TRUE(result.ok()) << result.url << ": " << result.error;
    EXPECT_EQ(result.status, 200) << result.url;
    EXPECT_EQ(result.bytes, 1000u) << result.url;
    EXPECT_EQ(result.attempts, 1) << result.url;
    EXPECT_EQ(result.body, "") << "keep_body is off";
    EXPECT_GE(result.seconds, 0.0);
  }
  EXPECT_EQ(server->stats().requests, urls.size());
  // Each fetcher (one per worker thread or process) keeps its connection alive across URLs.
  EXPECT_LE(server->stats().connections, bound(4));
  EXPECT_EQ(run.process_stats.has_value(), engine() == FetchEngine::kProcess);
  if (engine() == FetchEngine::kEventLoop) {
    EXPECT_GE(run.event_loop.connections_opened, 1u);
    EXPECT_LE(run.event_loop.connections_opened, 4u);
    EXPECT_GE(run.event_loop.peak_in_flight, 1u);
    EXPECT_LE(run.event_loop.peak_in_flight, 4u);
  } else {
    EXPECT_EQ(run.event_loop.connections_opened, 0u);
    EXPECT_EQ(run.event_loop.peak_in_flight, 0u);
  }
}

TEST_P(FetchEngineTest, BodiesArriveIntact) {
  auto server = start_server();
  constexpr std::size_t kSizes[] = {0, 1, 31, 50 * 1024, 1024 * 1024};
  std::vector<std::string> urls;
  for (const std::size_t size : kSizes) {
    urls.push_back(url(server->port(), "/body?bytes=" + std::to_string(size)));
  }
  FetchOptions options;
  options.timeout = 30s;
  options.keep_body = true;
  const FetchRun run = fetch_urls(urls, engine(), 3, options);
  ASSERT_EQ(run.results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const FetchResult& result = run.results[i];
    EXPECT_EQ(result.url, urls[i]);
    EXPECT_TRUE(result.ok()) << result.url << ": " << result.error;
    EXPECT_EQ(result.status, 200);
    EXPECT_EQ(result.bytes, kSizes[i]);
    ASSERT_EQ(result.body.size(), kSizes[i]) << result.url;
    for (std::size_t b = 0; b < kSizes[i]; ++b) {
      ASSERT_EQ(result.body[b], LatencyServer::body_byte(b)) << result.url << " at byte " << b;
    }
  }
}

TEST_P(FetchEngineTest, EachFaultFailsOnlyItsUrl) {
  auto server = start_server();
  const std::vector<std::string> urls = {
      url(server->port(), "/first?bytes=100"),
      url(server->port(), "/?status=404"),
      url(server->port(), "/?status=500"),
      url(server->port(), "/?reset=1&bytes=100KiB"),
      url(server->port(), "/?stall=1&bytes=1KiB"),
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/",
      "https://127.0.0.1:" + std::to_string(server->port()) + "/",
      url(server->port(), "/last?bytes=200"),
  };
  FetchOptions options;
  options.timeout = 1000ms;
  options.connect_timeout = 5000ms;
  const auto start = Clock::now();
  const FetchRun run = fetch_urls(urls, engine(), 3, options);
  // The stall ends at its 1 s timeout; nothing else waits.
  EXPECT_LT(Clock::now() - start, 30s);
  EXPECT_FALSE(run.stopped);
  ASSERT_EQ(run.results.size(), urls.size());
  const auto& r = run.results;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    EXPECT_EQ(r[i].url, urls[i]);
    EXPECT_EQ(r[i].attempts, 1) << urls[i] << ": " << r[i].error;
  }
  for (const std::size_t good : {std::size_t{0}, urls.size() - 1}) {
    EXPECT_TRUE(r[good].ok()) << r[good].error;
    EXPECT_EQ(r[good].status, 200);
  }
  EXPECT_EQ(r[0].bytes, 100u);
  EXPECT_EQ(r[7].bytes, 200u);
  for (std::size_t bad = 1; bad + 1 < urls.size(); ++bad) {
    EXPECT_FALSE(r[bad].ok()) << urls[bad];
    EXPECT_FALSE(r[bad].error.empty()) << urls[bad];
  }
  EXPECT_EQ(r[1].status, 404);
  EXPECT_TRUE(contains(r[1].error, "404")) << r[1].error;
  EXPECT_EQ(r[2].status, 500);
  EXPECT_TRUE(contains(r[2].error, "500")) << r[2].error;
  EXPECT_LT(r[3].bytes, 100u * 1024u) << r[3].error;
  EXPECT_TRUE(contains(lower(r[4].error), "timeout")) << r[4].error;
  EXPECT_EQ(r[5].status, 0) << r[5].error;
  const std::string tls_error = lower(r[6].error);
  EXPECT_TRUE(contains(tls_error, "ssl") || contains(tls_error, "tls")) << tls_error;
}

TEST_P(FetchEngineTest, RetriesTransientFailuresOnly) {
  auto server = start_server({.body_bytes = 10});
  const std::vector<std::string> urls = {
      url(server->port(), "/?status=503"),
      url(server->port(), "/?status=404"),
      url(server->port(), "/fine"),
  };
  FetchOptions options;
  options.retries = 2;
  options.retry_backoff = 20ms;
  options.timeout = 10s;
  const FetchRun run = fetch_urls(urls, engine(), 2, options);
  ASSERT_EQ(run.results.size(), urls.size());
  EXPECT_EQ(run.results[0].status, 503);
  EXPECT_FALSE(run.results[0].ok());
  EXPECT_EQ(run.results[0].attempts, 3);
  EXPECT_GE(run.results[0].seconds, 0.06) << "20 ms + 40 ms of backoff";
  EXPECT_EQ(run.results[1].status, 404);
  EXPECT_EQ(run.results[1].attempts, 1) << "404 is not transient";
  EXPECT_TRUE(run.results[2].ok()) << run.results[2].error;
  EXPECT_EQ(run.results[2].attempts, 1);
  EXPECT_EQ(server->stats().requests, 5u);
}

TEST_P(FetchEngineTest, KeepsAtMostWorkersInFlightAndReportsProgress) {
  auto server = start_server({.latency = 50ms, .body_bytes = 10});
  std::vector<std::string> urls;
  for (int i = 0; i < 24; ++i) urls.push_back(url(server->port(), "/n/" + std::to_string(i)));
  std::vector<std::pair<std::size_t, std::size_t>> progress;  // unguarded: never concurrent
  FetchControl control;
  control.on_progress = [&](std::size_t done, std::size_t total) {
    progress.emplace_back(done, total);
  };
  FetchOptions options;
  options.timeout = 30s;
  const FetchRun run = fetch_urls(urls, engine(), 3, options, control);
  ASSERT_EQ(run.results.size(), urls.size());
  EXPECT_EQ(first_error(run.results), "");
  EXPECT_LE(server->stats().peak_in_flight, bound(3));
  EXPECT_GE(server->stats().peak_in_flight, 1u);

  ASSERT_FALSE(progress.empty());
  for (std::size_t i = 0; i < progress.size(); ++i) {
    EXPECT_EQ(progress[i].second, urls.size());
    EXPECT_LE(progress[i].first, urls.size());
    if (i > 0) {
      EXPECT_GE(progress[i].first, progress[i - 1].first);
    }
  }
  EXPECT_EQ(progress.back().first, urls.size());
}

TEST_P(FetchEngineTest, StopEndsTheRunAndEveryUrlHasAResult) {
  auto server = start_server();
  std::vector<std::string> urls = {url(server->port(), "/fast?bytes=10")};
  for (int i = 0; i < 5; ++i) {
    urls.push_back(url(server->port(), "/stall/" + std::to_string(i) + "?stall=1&bytes=1KiB"));
  }
  FetchOptions options;
  options.timeout = 30s;
  const std::size_t workers = 2;
  // The fast URL answered and as many stalls waiting as the engine runs at once.
  StopWhenStalled stopper(*server, 1, bound(workers));
  FetchControl control;
  control.stop = stopper.token();
  const auto start = Clock::now();
  const FetchRun run = fetch_urls(urls, engine(), workers, options, control);
  const auto returned = Clock::now();
  ASSERT_TRUE(stopper.saw_stall()) << "the stalls never all started";
  EXPECT_LT(returned - stopper.stopped_at(), 10s);
  EXPECT_LT(returned - start, 30s) << "well before the 30 s timeout";
  EXPECT_TRUE(run.stopped);
  ASSERT_EQ(run.results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) EXPECT_EQ(run.results[i].url, urls[i]);
  // The process engine may lose a finished result with the worker it kills mid-chunk.
  const FetchResult& fast = run.results[0];
  if (engine() == FetchEngine::kProcess) {
    EXPECT_TRUE(fast.ok() || fast.error == kNotFetchedStopped) << fast.error;
  } else {
    EXPECT_TRUE(fast.ok()) << fast.error;
  }
  for (std::size_t i = 1; i < urls.size(); ++i) {
    EXPECT_EQ(run.results[i].error, kNotFetchedStopped) << urls[i];
  }
}

TEST_P(FetchEngineTest, StopRequestedBeforeTheStartFetchesNothing) {
  auto server = start_server({.body_bytes = 10});
  const std::vector<std::string> urls = local_urls(server->port(), 5);
  std::stop_source source;
  source.request_stop();
  FetchControl control;
  control.stop = source.get_token();
  const FetchRun run = fetch_urls(urls, engine(), 2, FetchOptions{}, control);
  EXPECT_TRUE(run.stopped);
  ASSERT_EQ(run.results.size(), urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    EXPECT_EQ(run.results[i].url, urls[i]);
    EXPECT_EQ(run.results[i].error, kNotFetchedStopped);
    EXPECT_EQ(run.results[i].attempts, 0);
  }
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST_P(FetchEngineTest, NoUrlsAndBadArguments) {
  const FetchRun empty = fetch_urls({}, engine(), 4, FetchOptions{});
  EXPECT_TRUE(empty.results.empty());
  EXPECT_FALSE(empty.stopped);

  const std::vector<std::string> urls = {"http://127.0.0.1:1/"};
  EXPECT_THROW((void)fetch_urls(urls, engine(), 0, FetchOptions{}), std::invalid_argument);
  EXPECT_THROW((void)fetch_urls(urls, engine(), 4097, FetchOptions{}), std::invalid_argument);
  FetchOptions bad;
  bad.timeout = 0ms;
  EXPECT_THROW((void)fetch_urls(urls, engine(), 1, bad), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Engines, FetchEngineTest,
                         ::testing::Values(FetchEngine::kSerial, FetchEngine::kThread,
                                           FetchEngine::kProcess, FetchEngine::kEventLoop),
                         [](const ::testing::TestParamInfo<FetchEngine>& info) {
                           switch (info.param) {
                             case FetchEngine::kSerial:
                               return std::string("Serial");
                             case FetchEngine::kThread:
                               return std::string("Thread");
                             case FetchEngine::kProcess:
                               return std::string("Process");
                             case FetchEngine::kEventLoop:
                               return std::string("EventLoop");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace crew::workloads
