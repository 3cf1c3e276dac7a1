// Unit tests of crew::LatencyServer's request-head scanner and parser (src/server/request_head),
// fed byte by byte and in one piece: no sockets, no threads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "../../src/server/request_head.hpp"
#include "crew/latency_server.hpp"

namespace crew::detail {
namespace {

using ::testing::HasSubstr;
using Kind = HeadScan::Kind;

// Scans `bytes` as they would arrive one byte per read; returns the first result that is not
// kNeedMore, and in `fed` how many bytes it took.
HeadScan scan_bytewise(std::string_view bytes, std::size_t limit, std::size_t* fed = nullptr) {
  RequestHeadScanner scanner(limit);
  HeadScan scan;
  for (std::size_t n = 1; n <= bytes.size(); ++n) {
    scan = scanner.scan(bytes.substr(0, n));
    if (scan.kind != Kind::kNeedMore) {
      if (fed != nullptr) *fed = n;
      return scan;
    }
  }
  if (fed != nullptr) *fed = bytes.size();
  return scan;
}

HeadScan scan_whole(std::string_view bytes, std::size_t limit = kMaxRequestHeadBytes) {
  RequestHeadScanner scanner(limit);
  return scanner.scan(bytes);
}

TEST(RequestHeadTest, FindsTheEndWhateverTheReads) {
  const std::string head = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string next = "GET /b HTTP/1.1\r\n";
  for (const HeadScan& scan : {scan_whole(head + next), scan_bytewise(head + next, 1024)}) {
    EXPECT_EQ(scan.kind, Kind::kComplete);
    EXPECT_EQ(scan.head_bytes, head.size());
  }
}

TEST(RequestHeadTest, BareLfAndMixedLineEndsEndAHead) {
  for (const std::string head : {"GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\nHost: x\n\r\n",
                                 "GET / HTTP/1.1\nHost: x\r\n\n"}) {
    const HeadScan scan = scan_bytewise(head + "tail", 1024);
    EXPECT_EQ(scan.kind, Kind::kComplete) << head;
    EXPECT_EQ(scan.head_bytes, head.size()) << head;
  }
}

TEST(RequestHeadTest, RefusesAtTheFirstWrongByte) {
  struct Case {
    std::string bytes;
    std::size_t refused_at;  // bytes fed when refused
    std::string_view says;
  };
  const Case cases[] = {
      {std::string("\x16\x03\x01\x02\x00", 5), 1, "not an HTTP request"},
      {"\r\n\r\n\x16\x03", 5, "not an HTTP request"},
      {"GE\x01T / HTTP/1.1\r\n", 3, "not an HTTP request"},
      {"GET / HTTP/1.1\rHost: x\r\n\r\n", 16, "bare CR"},
      {std::string("GET / HTTP/1.1\r\nHo\0st: x\r\n\r\n", 28), 19, "control character 0x00"},
      {"\r\r\n", 2, "bare CR"},
  };
  for (const Case& c : cases) {
    std::size_t fed = 0;
    const HeadScan scan = scan_bytewise(c.bytes, 1024, &fed);
    EXPECT_EQ(scan.kind, Kind::kRefused) << c.bytes;
    EXPECT_EQ(scan.status, 400u) << c.bytes;
    EXPECT_EQ(fed, c.refused_at) << c.bytes;
    EXPECT_THAT(scan.message, HasSubstr(c.says)) << c.bytes;
  }
}

TEST(RequestHeadTest, TheLimitIsExactAndSaysWhichPartIsTooLong) {
  const std::string start = "GET / HTTP/1.1\r\nCookie: ";
  const std::string at_limit = start + std::string(100 - start.size() - 4, 'c') + "\r\n\r\n";
  ASSERT_EQ(at_limit.size(), 100u);
  EXPECT_EQ(scan_bytewise(at_limit, 100).kind, Kind::kComplete);
  EXPECT_EQ(scan_whole(at_limit, 100).kind, Kind::kComplete);

  const std::string over = start + std::string(100 - start.size() - 3, 'c') + "\r\n\r\n";
  HeadScan scan = scan_whole(over, 100);
  EXPECT_EQ(scan.kind, Kind::kRefused);
  EXPECT_EQ(scan.status, 431u);

  std::size_t fed = 0;
  scan = scan_bytewise(start + std::string(1000, 'c'), 100, &fed);
  EXPECT_EQ(scan.kind, Kind::kRefused);
  EXPECT_EQ(scan.status, 431u);
  EXPECT_EQ(fed, 100u);  // refused once the limit is reached, not at the end of the head
  EXPECT_THAT(scan.message, HasSubstr("header fields"));
  EXPECT_THAT(scan.message, HasSubstr("100 bytes"));

  scan = scan_whole("GET /" + std::string(200, 'p'), 100);
  EXPECT_EQ(scan.kind, Kind::kRefused);
  EXPECT_EQ(scan.status, 414u);
  EXPECT_THAT(scan.message, HasSubstr("request line"));
}

TEST(RequestHeadTest, ResetStartsTheNextRequest) {
  RequestHeadScanner scanner(1024);
  EXPECT_EQ(scanner.scan("GET / HTTP/1.1\r\nHost: x\r\n\r\n").kind, Kind::kComplete);
  scanner.reset();
  EXPECT_EQ(scanner.scan("GET /").kind, Kind::kNeedMore);
  EXPECT_EQ(scanner.scan("GET /b HTTP/1.0\n\n").kind, Kind::kComplete);
}

TEST(RequestHeadTest, ParsesTheRequestLineAndConnection) {
  RequestHead head = parse_request_head("\r\n\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(head.status, 0u) << head.error;
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.target, "/a?b=1");
  EXPECT_TRUE(head.http11);
  EXPECT_TRUE(head.keep_alive);

  head = parse_request_head("GET / HTTP/1.0\nConnection: Keep-Alive\n\n");
  EXPECT_EQ(head.status, 0u) << head.error;
  EXPECT_FALSE(head.http11);
  EXPECT_TRUE(head.keep_alive);

  head = parse_request_head(
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
      "Connection: upgrade, CLOSE\r\n\r\n");
  EXPECT_FALSE(head.keep_alive);

  // A higher minor version is served as HTTP/1.1 (RFC 9110 §6.2).
  head = parse_request_head("GET / HTTP/1.9\r\nHost: x\r\n\r\n");
  EXPECT_EQ(head.status, 0u) << head.error;
  EXPECT_TRUE(head.http11);
}

TEST(RequestHeadTest, AbsoluteFormIsReducedToThePath) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"http://h:1/a?b=2", "/a?b=2"},
      {"HTTPS://h", "/"},
      {"http://h?bytes=3", "/?bytes=3"},
      {"ftp://h/a", "ftp://h/a"},  // left for the server to refuse
      {"*", "*"},
  };
  for (const auto& [target, path] : cases) {
    const RequestHead head =
        parse_request_head("GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(head.status, 0u) << target << ": " << head.error;
    EXPECT_EQ(head.target, path) << target;
  }
  EXPECT_EQ(parse_request_head("GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n").status, 400u);
  // An http URI with an empty host is invalid and must be rejected (RFC 9110 §4.2.1), however
  // the authority ends; so is userinfo in it (§4.2.4: "treat its presence as an error").
  for (const std::string_view target :
       {"http://", "http://?bytes=3", "https://:8080/a", "http://u:p@h/a", "http://@h/"}) {
    EXPECT_EQ(
        parse_request_head("GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n").status,
        400u)
        << target;
  }
}

TEST(RequestHeadTest, RefusesWhatRfc9112Refuses) {
  const std::pair<std::string_view, unsigned> cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 400},                        // no Host on 1.1
      {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},  // two Host
      {"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400},  // two Host on 1.0 too
      {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},           // invalid Host value
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},            // space before the colon
      {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},  // obs-fold
      {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},  // no colon
      {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},            // two spaces
      {"GET /\r\nHost: a\r\n\r\n", 400},                      // no version
      {"GET / HTTP/11\r\nHost: a\r\n\r\n", 400},              // malformed version
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},             // another major version
      {"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400},         // non-ASCII target
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
  };
  for (const auto& [bytes, status] : cases) {
    const RequestHead head = parse_request_head(bytes);
    EXPECT_EQ(head.status, status) << bytes;
    EXPECT_FALSE(head.error.empty()) << bytes;
    EXPECT_FALSE(head.keep_alive) << bytes;
  }
  EXPECT_EQ(parse_request_head("GET / HTTP/1.0\r\n\r\n").status, 0u);           // no Host on 1.0
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost:\r\n\r\n").status, 0u);  // empty Host
}

}  // namespace
}  // namespace crew::detail
