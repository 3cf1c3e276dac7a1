#include "server/request_head.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace crew::detail {
namespace {

// RFC 9110 §5.6.2: the characters of a token (method, field name, Connection option).
bool is_tchar(unsigned char c) {
  return std::isalnum(c) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return is_tchar(c); });
}

// A control character other than HTAB, CR and LF: valid nowhere in a head (RFC 9110 §5.5).
bool is_forbidden_control(unsigned char c) {
  return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

// uri-host [":" port] (RFC 3986): unreserved, sub-delims, ':' '[' ']' '%'; empty is allowed.
bool is_host_value(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("-._~!$&'()*+,;=:[]%").find(c) != std::string_view::npos;
  });
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// At most 40 bytes of `text`, for quoting a client's bytes in a one-line message.
std::string_view excerpt(std::string_view text) { return text.substr(0, 40); }

// Removes and returns the next line of `text`, without its LF or CR LF.
std::string_view take_line(std::string_view& text) {
  const std::size_t lf = text.find('\n');
  std::string_view line = text.substr(0, lf);
  text.remove_prefix(lf == std::string_view::npos ? text.size() : lf + 1);
  if (line.ends_with('\r')) line.remove_suffix(1);
  return line;
}

}  // namespace

HeadScan RequestHeadScanner::scan(std::string_view buffer) {
  const auto refuse = [](unsigned status, std::string message) {
    return HeadScan{
        .kind = HeadScan::Kind::kRefused, .status = status, .message = std::move(message)};
  };
  const std::size_t end = std::min(buffer.size(), limit_);
  while (pos_ < end) {
    const auto c = static_cast<unsigned char>(buffer[pos_]);
    if (c == '\r') {
      // Decided by the next byte: a line end when it is LF, else a bare CR (RFC 9112 §2.2).
      if (pos_ + 1 >= buffer.size()) break;
      if (buffer[pos_ + 1] != '\n') {
        return refuse(400, "bare CR in the request head (CR must be followed by LF)");
      }
      ++pos_;
      continue;
    }
    const bool in_method = phase_ == Phase::kLeadingLines || phase_ == Phase::kMethod;
    if (!in_method && is_forbidden_control(c)) {
      return refuse(400, fmt::format("control character 0x{:02x} in the request head", c));
    }
    switch (phase_) {
      case Phase::kLeadingLines:
        if (c == '\n') break;
        if (!is_tchar(c)) return refuse(400, "not an HTTP request (for TLS, use an https server)");
        phase_ = Phase::kMethod;
        break;
      case Phase::kMethod:
        if (c == ' ') {
          phase_ = Phase::kRequestLine;
        } else if (!is_tchar(c)) {
          return refuse(400, "not an HTTP request (for TLS, use an https server)");
        }
        break;
      case Phase::kRequestLine:
        if (c == '\n') phase_ = Phase::kFieldLineStart;
        break;
      case Phase::kFieldLineStart:
        if (c == '\n') {
          return HeadScan{.kind = HeadScan::Kind::kComplete, .head_bytes = pos_ + 1, .message = {}};
        }
        phase_ = Phase::kFieldLine;
        break;
      case Phase::kFieldLine:
        if (c == '\n') phase_ = Phase::kFieldLineStart;
        break;
    }
    ++pos_;
  }
  if (pos_ >= limit_) {
    if (phase_ == Phase::kFieldLineStart || phase_ == Phase::kFieldLine) {
      return refuse(431, fmt::format("request header fields too large: the request head is over "
                                     "{} bytes, the limit",
                                     limit_));
    }
    return refuse(414,
                  fmt::format("request line longer than {} bytes, the request head limit", limit_));
  }
  return {};
}

void RequestHeadScanner::reset() noexcept {
  pos_ = 0;
  phase_ = Phase::kLeadingLines;
}

RequestHead parse_request_head(std::string_view head) {
  RequestHead out;
  const auto fail = [&out](unsigned status, std::string message) {
    out.status = status;
    out.error = std::move(message);
    out.keep_alive = false;
    return out;
  };

  std::string_view request_line;
  do {
    request_line = take_line(head);
  } while (request_line.empty() && !head.empty());
  const std::size_t sp1 = request_line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      request_line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "malformed request line (expected: METHOD TARGET HTTP/1.1)");
  }
  const std::string_view method = request_line.substr(0, sp1);
  std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);
  if (version.size() != 8 || !version.starts_with("HTTP/") || !std::isdigit(version[5]) ||
      version[6] != '.' || !std::isdigit(version[7])) {
    return fail(400, fmt::format("malformed HTTP version \"{}\"", excerpt(version)));
  }
  if (version[5] != '1') {
    return fail(505, fmt::format("{} is not served: only HTTP/1.1 and HTTP/1.0", version));
  }
  // RFC 9110 §6.2: a higher minor version of a known major one is served as the highest known.
  out.http11 = version[7] != '0';
  out.method = method;

  std::size_t hosts = 0;
  bool close = false;
  bool keep_alive = false;
  while (!head.empty()) {
    const std::string_view field = take_line(head);
    if (field.empty()) break;  // the blank line that ends the head
    if (field.front() == ' ' || field.front() == '\t') {
      return fail(400, "obsolete line folding in the header fields is not accepted");
    }
    const std::size_t colon = field.find(':');
    // No whitespace between a field name and its colon (RFC 9112 §5.1): is_token refuses it.
    if (colon == std::string_view::npos || !is_token(field.substr(0, colon))) {
      return fail(400, fmt::format("malformed header field \"{}\"", excerpt(field)));
    }
    const std::string name = lower(field.substr(0, colon));
    const std::string_view value = trim(field.substr(colon + 1));
    if (name == "host") {
      ++hosts;
      if (!is_host_value(value)) return fail(400, "malformed Host field value");
    } else if (name == "connection") {
      std::string_view options = value;
      while (!options.empty()) {
        const std::size_t comma = options.find(',');
        const std::string option = lower(trim(options.substr(0, comma)));
        options.remove_prefix(comma == std::string_view::npos ? options.size() : comma + 1);
        if (option == "close") close = true;
        if (option == "keep-alive") keep_alive = true;
      }
    } else if ((name == "content-length" && value != "0") || name == "transfer-encoding") {
      // The server has no use for a request body; refusing it keeps the framing simple.
      return fail(400, "request bodies are not accepted");
    }
  }
  if (hosts > 1) return fail(400, "more than one Host field (RFC 9112 §3.2)");
  if (out.http11 && hosts == 0) {
    return fail(400, "an HTTP/1.1 request needs a Host field (RFC 9112 §3.2)");
  }
  out.keep_alive = close ? false : keep_alive || out.http11;

  if (std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f;
      })) {
    return fail(400, "malformed request target");
  }
  // The absolute form names this server; the path and query that follow its authority are the
  // resource (RFC 9112 §3.2.2). Other forms are left as they are, for the caller to refuse.
  const std::string scheme = lower(target.substr(0, target.find("://")));
  if (target.find("://") != std::string_view::npos && (scheme == "http" || scheme == "https")) {
    target.remove_prefix(scheme.size() + 3);
    const std::size_t path = target.find_first_of("/?");
    const std::string_view authority = target.substr(0, path);
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    if (authority.find('@') != std::string_view::npos) {
      return fail(400, "an absolute request target must not carry userinfo (user@host)");
    }
    // The host is what precedes ":port" (a bracketed IPv6 literal keeps its colons); an http
    // URI with an empty host is invalid and must be rejected (RFC 9110 §4.2.1).
    const std::size_t port_colon =
        authority.starts_with('[') ? authority.find(':', authority.find(']')) : authority.find(':');
    if (authority.substr(0, port_colon).empty()) {
      return fail(400, "an absolute request target needs a host");
    }
    target.remove_prefix(path == std::string_view::npos ? target.size() : path);
    out.target = target.starts_with('/') ? std::string(target) : "/" + std::string(target);
  } else {
    out.target = target;
  }
  return out;
}

}  // namespace crew::detail
