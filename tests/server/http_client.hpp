// A blocking POSIX socket HTTP/1.1 client for the LatencyServer tests: every read has a timeout,
// so a server that never answers fails a test instead of hanging it. Header-only, shared by
// tests/server/*_test.cpp.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "crew/latency_server.hpp"

namespace crew::server_test {

using namespace std::chrono_literals;

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  bool complete = false;  // the whole Content-Length arrived
  int error = 0;          // errno of the read that failed, 0 for EOF or success
  bool eof = false;

  // The value of header `name` (lower case), or "" when absent.
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

inline std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// One blocking TCP connection to the server. Every read has a timeout, so a server that never
// answers fails the test instead of hanging it.
class Client {
 public:
  explicit Client(std::uint16_t port, bool ipv6 = false) {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    set_read_timeout(30s);
    int rc = 0;
    if (ipv6) {
      sockaddr_in6 address{};
      address.sin6_family = AF_INET6;
      address.sin6_port = htons(port);
      address.sin6_addr = in6addr_loopback;
      rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } else {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(port);
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address);
    }
    if (rc != 0) {
      const int error = errno;
      ::close(fd_);
      throw std::system_error(error, std::generic_category(), "connect");
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void set_read_timeout(std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) throw std::system_error(errno, std::generic_category(), "send");
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void get(std::string_view target, std::string_view extra_headers = "") {
    send(std::string("GET ") + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         std::string(extra_headers) + "\r\n");
  }

  // Reads one response. Stops at EOF or a read error (reported in the Response).
  Response read_response(bool head_request = false) {
    Response response;
    std::size_t head_end = std::string::npos;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(response)) return response;
    }
    const std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    std::size_t pos = head.find("\r\n");
    const std::string status_line = head.substr(0, pos);
    if (status_line.size() >= 12) response.status = std::stoi(status_line.substr(9, 3));
    while (pos != std::string::npos) {
      const std::size_t next = head.find("\r\n", pos + 2);
      const std::string field =
          head.substr(pos + 2, next == std::string::npos ? next : next - pos - 2);
      const std::size_t colon = field.find(':');
      if (colon != std::string::npos) {
        std::string value = field.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        response.headers[lower(field.substr(0, colon))] = value;
      }
      pos = next;
    }
    std::size_t length = 0;
    if (auto it = response.headers.find("content-length"); it != response.headers.end()) {
      length = std::stoull(it->second);
    }
    if (head_request) length = 0;
    while (buffer_.size() < length) {
      if (!fill(response)) break;
    }
    const std::size_t take = std::min(length, buffer_.size());
    response.body = buffer_.substr(0, take);
    buffer_.erase(0, take);
    response.complete = response.body.size() == length;
    return response;
  }

  // Sends `data` one byte per send(), with Nagle off, as a client typing its request would.
  void send_bytewise(std::string_view data) {
    int on = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    for (std::size_t i = 0; i < data.size(); ++i) send(data.substr(i, 1));
  }

  // Closes the connection with a reset (SO_LINGER 0) instead of a FIN.
  void reset() {
    const linger hard{.l_onoff = 1, .l_linger = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    ::close(fd_);
    fd_ = -1;
  }

  // Half-closes the connection (shutdown SHUT_WR): the server reads EOF after what was sent, and
  // this side can still read the answers.
  void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

  int fd() const { return fd_; }

  // true when the server closed the connection (EOF or reset) within the read timeout.
  bool closed_by_peer() {
    char byte = 0;
    const ssize_t n = ::recv(fd_, &byte, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool fill(Response& response) {
    char data[65536];
    const ssize_t n = ::recv(fd_, data, sizeof data, 0);
    if (n > 0) {
      buffer_.append(data, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) {
      response.eof = true;
    } else {
      response.error = errno;
    }
    return false;
  }

  int fd_ = -1;
  std::string buffer_;
};

inline std::string expected_body(std::uint64_t offset, std::size_t size) {
  std::string body(size, '\0');
  LatencyServer::fill_body(offset, body);
  return body;
}

}  // namespace crew::server_test
