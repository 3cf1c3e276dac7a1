// crew-test-label: concurrency
// Tests of crew::LatencyServer over loopback, with a plain blocking POSIX socket client: bodies,
// keep-alive, latency, the fault-injecting query overrides, /stats and 1,000 waiting connections.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "server/http_client.hpp"
#include "support/fetch_support.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using server_test::Client;
using server_test::expected_body;
using server_test::Response;
using testing::start_server;

nlohmann::json get_stats(std::uint16_t port) {
  Client client(port);
  client.get("/stats");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("content-type"), "application/json");
  return nlohmann::json::parse(response.body);
}

// A response's last bytes reach the client a moment before the server's write completes and the
// request leaves the in-flight count; waits (up to 10 s) for that count to reach `expected`.
void wait_for_in_flight(const LatencyServer& server, std::uint64_t expected) {
  const auto deadline = Clock::now() + 10s;
  while (server.stats().in_flight != expected) {
    ASSERT_LT(Clock::now(), deadline) << "in flight: " << server.stats().in_flight;
    std::this_thread::sleep_for(1ms);
  }
}

TEST(LatencyServerTest, BodyIsLinesOfTheirOffset) {
  EXPECT_EQ(expected_body(0, 64),
            "0000000000000000 abcdefghijklmn\n0000000000000020 abcdefghijklmn\n");
  EXPECT_EQ(expected_body(0x1000, 32), "0000000000001000 abcdefghijklmn\n");
  // Any offset and length agrees with body_byte, the fast path included.
  const std::string body = expected_body(7, 1000);
  for (std::size_t i = 0; i < body.size(); ++i) {
    ASSERT_EQ(body[i], LatencyServer::body_byte(7 + i)) << "at " << i;
  }
}

TEST(LatencyServerTest, GetReturnsStatusHeadersAndBody) {
  auto server = start_server({.body_bytes = 5000});
  ASSERT_NE(server->port(), 0);
  EXPECT_TRUE(server->running());
  Client client(server->port());
  client.get("/anything");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("content-length"), "5000");
  EXPECT_EQ(response.header("content-type"), "text/plain");
  EXPECT_EQ(response.header("connection"), "keep-alive");
  ASSERT_TRUE(response.complete);
  EXPECT_EQ(response.body, expected_body(0, 5000));
}

TEST(LatencyServerTest, HeadSendsHeadersOnly) {
  auto server = start_server({.body_bytes = 5000});
  Client client(server->port());
  client.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  const Response head = client.read_response(true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), "5000");
  // The next response on the connection starts right after the head: no body was sent.
  client.get("/?bytes=10");
  const Response next = client.read_response();
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, expected_body(0, 10));
}

TEST(LatencyServerTest, KeepAliveReusesTheConnection) {
  auto server = start_server({.body_bytes = 100});
  Client client(server->port());
  client.get("/one");
  const Response first = client.read_response();
  client.get("/two?bytes=3KiB");
  const Response second = client.read_response();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, expected_body(0, 100));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, expected_body(0, 3072));
  const LatencyServerStats stats = server->stats();
  EXPECT_EQ(stats.connections, 1u);
  EXPECT_EQ(stats.requests, 2u);
}

TEST(LatencyServerTest, ConnectionCloseIsHonoured) {
  auto server = start_server({.body_bytes = 10});
  Client client(server->port());
  client.get("/", "Connection: close\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.header("connection"), "close");
  EXPECT_TRUE(response.complete);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerTest, LatencyIsAtLeastWhatWasAsked) {
  auto server = start_server({.latency = 150ms, .body_bytes = 10});
  Client client(server->port());
  auto start = Clock::now();
  client.get("/");
  EXPECT_TRUE(client.read_response().complete);
  EXPECT_GE(Clock::now() - start, 150ms);
  EXPECT_LT(Clock::now() - start, 10s);

  start = Clock::now();
  client.get("/?latency=0.3s");
  EXPECT_TRUE(client.read_response().complete);
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_LT(Clock::now() - start, 10s);
}

// A 400 names the bad value, but never echoes a whole 10 KB one back (each query value error put
// the value in the body whole).
TEST(LatencyServerTest, BadQueryValuesAreEchoedShortened) {
  auto server = start_server({.body_bytes = 4});
  for (const std::string name : {"status", "bytes", "latency", "reset"}) {
    Client client(server->port());
    client.get("/?" + name + "=" + std::string(10'000, '9') + "x");
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 400) << name;
    EXPECT_LT(response.body.size(), 300U) << name << ": " << response.body.substr(0, 300);
    EXPECT_THAT(response.body, HasSubstr(name)) << response.body.substr(0, 300);
  }
}

TEST(LatencyServerTest, StatusOverrides) {
  auto server = start_server({.body_bytes = 20});
  Client client(server->port());
  client.get("/?status=404");
  const Response not_found = client.read_response();
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.body, expected_body(0, 20));
  client.get("/?status=500&bytes=0");
  const Response error = client.read_response();
  EXPECT_EQ(error.status, 500);
  EXPECT_TRUE(error.complete);
  EXPECT_EQ(error.body, "");
}

TEST(LatencyServerTest, ResetCutsTheBodyShort) {
  auto server = start_server();
  Client client(server->port());
  client.get("/?reset=1&bytes=100KiB");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("content-length"), "102400");
  EXPECT_FALSE(response.complete);
  EXPECT_LT(response.body.size(), 102400u);
  EXPECT_TRUE(response.eof || response.error == ECONNRESET) << "errno " << response.error;
  // What arrived is the right content.
  EXPECT_EQ(response.body, expected_body(0, response.body.size()));
}

TEST(LatencyServerTest, StallNeverCompletesButStopEndsIt) {
  auto server = start_server();
  Client client(server->port());
  client.get("/?stall=1&bytes=1KiB");
  client.set_read_timeout(500ms);
  const Response stalled = client.read_response();
  EXPECT_EQ(stalled.status, 200);
  EXPECT_FALSE(stalled.complete);
  EXPECT_TRUE(stalled.error == EAGAIN || stalled.error == EWOULDBLOCK) << stalled.error;
  EXPECT_EQ(server->stats().in_flight, 1u);

  const auto start = Clock::now();
  server->stop();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_FALSE(server->running());
  client.set_read_timeout(10s);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerTest, StopClosesConnectionsWaitingTheirLatency) {
  auto server = start_server();
  Client client(server->port());
  client.get("/?latency=60s");
  // /stats on another connection answers at once while the first one waits.
  const auto deadline = Clock::now() + 10s;
  while (get_stats(server->port())["in_flight"] != 1) {
    ASSERT_LT(Clock::now(), deadline);
    std::this_thread::sleep_for(5ms);
  }
  const auto start = Clock::now();
  server->stop();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(server->stats().in_flight, 0u);
}

TEST(LatencyServerTest, LargeBodyIsStreamedIntact) {
  auto server = start_server();
  Client client(server->port());
  client.get("/big?bytes=20MiB");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200);
  ASSERT_TRUE(response.complete);
  ASSERT_EQ(response.body.size(), 20u << 20);
  EXPECT_TRUE(response.body == expected_body(0, 20u << 20));
}

TEST(LatencyServerTest, StatsCountRequests) {
  auto server = start_server({.body_bytes = 1});
  Client client(server->port());
  for (int i = 0; i < 3; ++i) {
    client.get("/");
    ASSERT_TRUE(client.read_response().complete);
  }
  wait_for_in_flight(*server, 0);
  const nlohmann::json stats = get_stats(server->port());
  EXPECT_EQ(stats["requests"], 3);
  EXPECT_EQ(stats["in_flight"], 0);
  EXPECT_EQ(stats["peak_in_flight"], 1);
  EXPECT_EQ(stats["connections"], 2);  // the client's and the /stats one
  EXPECT_EQ(stats["bad_requests"], 0);
}

TEST(LatencyServerTest, BadQueryGets400AndKeepsTheConnection) {
  auto server = start_server({.body_bytes = 5});
  Client client(server->port());
  client.get("/?latency=soon");
  Response bad = client.read_response();
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("latency"));
  client.get("/?bytes=5XB");
  bad = client.read_response();
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("bytes"));
  client.get("/?status=99");
  EXPECT_EQ(client.read_response().status, 400);
  client.get("/?colour=blue");
  bad = client.read_response();
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("unknown query parameter \"colour\""));
  client.get("/");
  EXPECT_EQ(client.read_response().status, 200);
  EXPECT_EQ(server->stats().bad_requests, 4u);
}

TEST(LatencyServerTest, ResetAndStallOnAStatusWithoutBodyGet400) {
  // 204 and 304 carry no body, so there is nothing to cut short or stall: a request for it is
  // refused as one with bytes=0 is, not answered as if reset=1 or stall=1 were not there.
  auto server = start_server({.body_bytes = 5});
  Client client(server->port());
  for (const char* query : {"/?status=204&stall=1", "/?status=304&reset=1"}) {
    client.get(query);
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 400) << query;
    EXPECT_THAT(response.body, HasSubstr("body")) << query;
  }
  client.get("/?status=204");
  EXPECT_EQ(client.read_response().status, 204);
}

TEST(LatencyServerTest, MalformedRequestGets400AndIsClosed) {
  auto server = start_server();
  Client client(server->port());
  client.send("NONSENSE\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.header("connection"), "close");
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerTest, ThousandConnectionsWaitAtOnce) {
  constexpr std::size_t kConnections = 1000;
  // Two descriptors per connection (the client's and the server's) in this one process.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  if (limit.rlim_cur < 2 * kConnections + 64) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit.rlim_max << " is too low";
  }
  auto server = start_server({.body_bytes = 100});
  std::vector<std::unique_ptr<Client>> clients;
  clients.reserve(kConnections);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<Client>(server->port()));
    // Long enough that every request is still waiting when the last is sent, even under a
    // sanitizer; the test only waits it out once.
    clients.back()->get("/?latency=3s");
  }
  const auto deadline = Clock::now() + 30s;
  while (get_stats(server->port())["peak_in_flight"] < kConnections) {
    ASSERT_LT(Clock::now(), deadline) << "peak in flight " << server->stats().peak_in_flight;
    std::this_thread::sleep_for(20ms);
  }
  for (auto& client : clients) {
    const Response response = client->read_response();
    ASSERT_EQ(response.status, 200);
    ASSERT_EQ(response.body, expected_body(0, 100));
  }
  EXPECT_GE(Clock::now() - start, 3s);
  wait_for_in_flight(*server, 0);
  const LatencyServerStats stats = server->stats();
  EXPECT_GE(stats.peak_in_flight, kConnections);
  EXPECT_EQ(stats.requests, kConnections);
  EXPECT_GE(stats.open_connections, kConnections);
}

TEST(LatencyServerTest, BindsIpv6Loopback) {
  LatencyServer server({.bind_address = "::1", .body_bytes = 8});
  try {
    server.start();
  } catch (const std::system_error& error) {
    GTEST_SKIP() << "no IPv6 loopback here: " << error.what();
  }
  Client client(server.port(), true);
  client.get("/");
  EXPECT_EQ(client.read_response().body, expected_body(0, 8));
}

TEST(LatencyServerTest, RestartsAfterStop) {
  LatencyServer server({.body_bytes = 4});
  server.start();
  server.stop();
  server.start();
  Client client(server.port());
  client.get("/");
  EXPECT_EQ(client.read_response().status, 200);
}

TEST(LatencyServerTest, PortInUseThrowsSystemError) {
  auto first = start_server();
  LatencyServer second({.port = first->port()});
  EXPECT_THROW(second.start(), std::system_error);
}

TEST(LatencyServerTest, InvalidOptionsThrow) {
  EXPECT_THROW(LatencyServer({.bind_address = "localhost"}), std::invalid_argument);
  EXPECT_THROW(LatencyServer({.threads = 0}), std::invalid_argument);
  EXPECT_THROW(LatencyServer({.latency = 2h}), std::invalid_argument);
}

TEST(LatencyServerTest, ParseLatency) {
  EXPECT_EQ(parse_latency("0"), 0ms);
  EXPECT_EQ(parse_latency("250"), 250ms);
  EXPECT_EQ(parse_latency("250ms"), 250ms);
  EXPECT_EQ(parse_latency("2s"), 2000ms);
  EXPECT_EQ(parse_latency("1.5s"), 1500ms);
  EXPECT_EQ(parse_latency("3600s"), 3600s);
  for (const char* bad : {"", "ms", "-1", "1.5ms", "1.s", "3601s", "2m", "abc", "99999999999"}) {
    EXPECT_THROW((void)parse_latency(bad), std::invalid_argument) << bad;
  }
}

TEST(LatencyServerTest, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("0"), 0u);
  EXPECT_EQ(parse_byte_size("5000"), 5000u);
  EXPECT_EQ(parse_byte_size("5000B"), 5000u);
  EXPECT_EQ(parse_byte_size("5KB"), 5000u);
  EXPECT_EQ(parse_byte_size("50KiB"), 51200u);
  EXPECT_EQ(parse_byte_size("20MiB"), 20u << 20);
  EXPECT_EQ(parse_byte_size("4GiB"), kMaxBodyBytes);
  for (const char* bad : {"", "KiB", "-1", "1.5KiB", "5XB", "5GiB", "99999999999999999999"}) {
    EXPECT_THROW((void)parse_byte_size(bad), std::invalid_argument) << bad;
  }
}

}  // namespace
}  // namespace crew
