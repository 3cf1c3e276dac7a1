// crew-test-label: concurrency
// Tests of crew::LatencyServer's request heads over loopback (issue 11): heads that arrive in many
// reads, pipelining, the head size limit (414 / 431), and RFC 9112 conformance (Host, the
// absolute form, Connection lists, empty lines, bare LF and bare CR).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "crew/latency_server.hpp"
#include "server/http_client.hpp"
#include "support/fetch_support.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;
using server_test::Client;
using server_test::expected_body;
using server_test::Response;
using testing::start_server;

// "GET <target> HTTP/1.1" with Host and `fields`, padded with a Cookie field so that the whole
// head is exactly `head_bytes` long.
std::string head_of_size(std::string_view target, std::size_t head_bytes) {
  const std::string start = "GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\nCookie: ";
  const std::size_t end_bytes = 4;  // "\r\n\r\n"
  return start + std::string(head_bytes - start.size() - end_bytes, 'c') + "\r\n\r\n";
}

TEST(LatencyServerHttpTest, LongPathIsServed) {
  auto server = start_server({.body_bytes = 7});
  Client client(server->port());
  for (const std::size_t length : {960u, 1000u, 4000u, 12000u}) {
    client.get(fmt::format("/{}?bytes=7", std::string(length, 'p')));
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 200) << length << ": " << response.body;
    EXPECT_EQ(response.body, expected_body(0, 7)) << length;
  }
}

TEST(LatencyServerHttpTest, LongCookieIsServed) {
  auto server = start_server({.body_bytes = 7});
  Client client(server->port());
  for (const std::size_t length : {1500u, 9000u}) {
    client.get("/", "Cookie: " + std::string(length, 'c') + "\r\n");
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 200) << length << ": " << response.body;
    EXPECT_EQ(response.body, expected_body(0, 7)) << length;
  }
}

TEST(LatencyServerHttpTest, HeadTypedByteByByteIsServed) {
  auto server = start_server({.body_bytes = 7});
  Client client(server->port());
  client.send_bytewise("GET /slowly HTTP/1.1\r\nHost: x\r\nUser-Agent: typist\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 7));
}

TEST(LatencyServerHttpTest, FiftyPipelinedRequestsAreAllAnsweredInOrder) {
  auto server = start_server();
  Client client(server->port());
  std::string requests;
  for (int i = 1; i <= 50; ++i) {
    requests += "GET /" + std::to_string(i) + "?bytes=" + std::to_string(i) +
                " HTTP/1.1\r\nHost: x\r\nUser-Agent: pipeline\r\n\r\n";
  }
  client.send(requests);
  for (std::size_t i = 1; i <= 50; ++i) {
    const Response response = client.read_response();
    ASSERT_EQ(response.status, 200) << "response " << i << ": " << response.body;
    ASSERT_EQ(response.body, expected_body(0, i)) << "response " << i;
  }
  EXPECT_EQ(server->stats().requests, 50u);
  EXPECT_EQ(server->stats().bad_requests, 0u);
}

TEST(LatencyServerHttpTest, HeadOfExactlyTheLimitIsServed) {
  auto server = start_server({.body_bytes = 3});
  Client client(server->port());
  client.send(head_of_size("/", kMaxRequestHeadBytes));
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 3));
}

TEST(LatencyServerHttpTest, FieldsOverTheLimitGet431AndClose) {
  auto server = start_server();
  Client client(server->port());
  client.send(head_of_size("/", kMaxRequestHeadBytes + 1));
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 431) << response.body;
  EXPECT_THAT(response.body, HasSubstr("header fields"));
  EXPECT_THAT(response.body, HasSubstr("16384"));
  EXPECT_EQ(response.header("connection"), "close");
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerHttpTest, RequestLineOverTheLimitGets414AndClose) {
  auto server = start_server();
  Client client(server->port());
  client.get(fmt::format("/{}", std::string(kMaxRequestHeadBytes + 100, 'p')));
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 414) << response.body;
  EXPECT_THAT(response.body, HasSubstr("request line"));
  EXPECT_THAT(response.body, HasSubstr("16384"));
  EXPECT_EQ(response.header("connection"), "close");
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerHttpTest, TlsHandshakeGets400AtOnce) {
  auto server = start_server();
  Client client(server->port());
  client.set_read_timeout(10s);
  client.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 400);
  EXPECT_THAT(response.body, HasSubstr("not an HTTP request"));
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerHttpTest, Http11WithoutHostGets400) {
  auto server = start_server();
  Client client(server->port());
  client.send("GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 400);
  EXPECT_THAT(response.body, HasSubstr("Host"));
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerHttpTest, TwoHostFieldsGet400) {
  auto server = start_server();
  for (const char* version : {"HTTP/1.1", "HTTP/1.0"}) {
    Client client(server->port());
    client.send(std::string("GET / ") + version + "\r\nHost: a\r\nHost: b\r\n\r\n");
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 400) << version;
    EXPECT_THAT(response.body, HasSubstr("Host")) << version;
  }
}

TEST(LatencyServerHttpTest, Http10WithoutHostIsServed) {
  auto server = start_server({.body_bytes = 4});
  Client client(server->port());
  client.send("GET / HTTP/1.0\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, expected_body(0, 4));
  EXPECT_EQ(response.header("connection"), "close");
}

TEST(LatencyServerHttpTest, AbsoluteFormTargetIsServed) {
  auto server = start_server({.body_bytes = 4});
  Client client(server->port());
  const std::string authority = "127.0.0.1:" + std::to_string(server->port());
  client.send("GET http://" + authority + "/x?bytes=9 HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  Response response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 9));
  // No path at all is "/", and the scheme is case-insensitive.
  client.send("GET HTTP://" + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 4));
  // Only http and https name this server's resources.
  client.send("GET ftp://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  EXPECT_EQ(client.read_response().status, 400);
}

TEST(LatencyServerHttpTest, ConnectionIsAListAndCloseWins) {
  auto server = start_server({.body_bytes = 2});
  for (const char* value : {"keep-alive, close", "close, keep-alive", "Keep-Alive,Close"}) {
    Client client(server->port());
    client.get("/", std::string("Connection: ") + value + "\r\n");
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 200) << value;
    EXPECT_EQ(response.header("connection"), "close") << value;
    EXPECT_TRUE(client.closed_by_peer()) << value;
  }
  // A token that merely contains "close" is not close.
  Client client(server->port());
  client.get("/", "Connection: x-closed-captions\r\n");
  EXPECT_EQ(client.read_response().header("connection"), "keep-alive");
  // HTTP/1.0 is kept alive only when asked, in any case.
  Client old(server->port());
  old.send("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_EQ(old.read_response().header("connection"), "keep-alive");
}

TEST(LatencyServerHttpTest, EmptyLinesBeforeTheRequestLineAreIgnored) {
  auto server = start_server({.body_bytes = 5});
  Client client(server->port());
  client.send("\r\n\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 5));
}

TEST(LatencyServerHttpTest, BareLfHeadIsServedAtOnce) {
  auto server = start_server({.body_bytes = 5});
  Client client(server->port());
  // No timeout is asked for: a server that waited for CRLF CRLF would fail the read (10 s).
  client.set_read_timeout(10s);
  client.send("GET /?bytes=6 HTTP/1.1\nHost: x\n\n");
  Response response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 6));
  client.send("GET / HTTP/1.1\r\nHost: x\n\r\n");
  response = client.read_response();
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, expected_body(0, 5));
}

TEST(LatencyServerHttpTest, BareCrIsRefusedAtOnce) {
  auto server = start_server();
  Client client(server->port());
  client.set_read_timeout(10s);
  client.send("GET / HTTP/1.1\rHost: x\r\r");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 400);
  EXPECT_THAT(response.body, HasSubstr("CR"));
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(LatencyServerHttpTest, MalformedFieldsGet400) {
  auto server = start_server();
  // RFC 9112 §5.1: whitespace between a field name and its colon; §5.2: obsolete line folding.
  for (const char* fields : {"Host : x\r\n", "Host: x\r\nX-A: 1\r\n  folded\r\n", ": x\r\n"}) {
    Client client(server->port());
    client.send(std::string("GET / HTTP/1.1\r\n") + fields + "\r\n");
    const Response response = client.read_response();
    EXPECT_EQ(response.status, 400) << fields;
    EXPECT_TRUE(client.closed_by_peer()) << fields;
  }
}

TEST(LatencyServerHttpTest, OtherMethodsGet405WithAllow) {
  auto server = start_server();
  Client client(server->port());
  client.send("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.header("allow"), "GET, HEAD");
}

TEST(LatencyServerHttpTest, OtherHttpVersionsGet505) {
  auto server = start_server();
  Client client(server->port());
  client.send("GET / HTTP/2.0\r\nHost: x\r\n\r\n");
  const Response response = client.read_response();
  EXPECT_EQ(response.status, 505);
  EXPECT_THAT(response.body, HasSubstr("HTTP/1.1"));
  Client garbled(server->port());
  garbled.send("GET / HTTPS/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(garbled.read_response().status, 400);
}

}  // namespace
}  // namespace crew
