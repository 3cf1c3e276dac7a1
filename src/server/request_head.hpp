// The request head of crew::LatencyServer: where a head ends in bytes that arrive in any number of
// reads (RequestHeadScanner), and what a complete head asks for (parse_request_head), per RFC 9112.
// No IO here, so both are unit-tested byte by byte (tests/server/request_head_test.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace crew::detail {

struct HeadScan {
  enum class Kind {
    kNeedMore,  // no end yet, and none of the bytes so far is wrong: read more
    kComplete,  // the head is the first head_bytes bytes
    kRefused,   // answer `status` with `message` and close: no more bytes can make it a head
  };
  Kind kind = Kind::kNeedMore;
  std::size_t head_bytes = 0;
  unsigned status = 0;
  std::string message;
};

// Finds the end of one request head: the empty line after the header fields. A line ends with LF,
// CR LF accepted too (RFC 9112 §2.2), so a bare-LF head is served as soon as it is complete.
// Empty lines before the request line are part of the head and skipped by the parser (§2.2).
// Refuses as soon as the bytes seen show that no head can come: a method byte that is no token
// character (a TLS ClientHello starts with 0x16), a CR not followed by LF, a control character, or
// more than `limit` bytes without an end (414 while still in the request line, else 431).
//
// Each call looks only at the bytes it has not seen, so a head typed one byte per read costs
// O(length) in all, not O(length²).
class RequestHeadScanner {
 public:
  explicit RequestHeadScanner(std::size_t limit) : limit_(limit) {}

  // `buffer` holds the bytes of this request received so far, from its first byte; each call's
  // buffer must start with the previous call's. After kComplete or kRefused, call reset() before
  // scanning the next request's bytes.
  [[nodiscard]] HeadScan scan(std::string_view buffer);
  void reset() noexcept;

 private:
  enum class Phase { kLeadingLines, kMethod, kRequestLine, kFieldLineStart, kFieldLine };

  std::size_t limit_;
  std::size_t pos_ = 0;  // bytes of the buffer already scanned
  Phase phase_ = Phase::kLeadingLines;
};

// What a well-formed head asks for, or why it is refused.
struct RequestHead {
  // 0 when the request can be served (method not yet checked); else the status to refuse it with
  // (400, or 505 for an HTTP version other than 1.x), `error` the one-line reason.
  unsigned status = 0;
  std::string error;
  std::string method;
  // The origin form: path and query ("/a?bytes=5"). An absolute-form target
  // (http://host:port/a?bytes=5, RFC 9112 §3.2.2) is reduced to it.
  std::string target;
  bool http11 = true;      // HTTP/1.1 (or 1.x above 1); false for HTTP/1.0
  bool keep_alive = true;  // after the Connection field: HTTP/1.1 unless "close", 1.0 only if
                           // "keep-alive"; "close" wins over "keep-alive" in the list
};

// Parses a head that RequestHeadScanner found complete (its first head_bytes bytes): skips the
// empty lines before the request line, then checks the request line, the HTTP version, each
// header field's syntax, Host (exactly one on HTTP/1.1, at most one on 1.0, RFC 9112 §3.2) and
// that no request body is announced. Thread safety: safe.
[[nodiscard]] RequestHead parse_request_head(std::string_view head);

}  // namespace crew::detail
