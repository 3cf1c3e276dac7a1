#include "support/hostile_http_peer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace crew::testing {
namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::string response(std::string_view status, std::string_view headers, std::string_view body) {
  std::string text = "HTTP/1.1 ";
  text += status;
  text += "\r\n";
  text += headers;
  text += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  text += body;
  return text;
}

}  // namespace

HostilePeer::HostilePeer(std::string address) : address_(std::move(address)) {
  const bool ipv6 = address_.find(':') != std::string::npos;
  listen_fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw_errno("socket");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage storage{};
  socklen_t length = 0;
  int parsed = 0;
  if (ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    parsed = ::inet_pton(AF_INET6, address_.c_str(), &a->sin6_addr);
    length = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    parsed = ::inet_pton(AF_INET, address_.c_str(), &a->sin_addr);
    length = sizeof *a;
  }
  if (parsed != 1) {
    ::close(listen_fd_);
    throw std::system_error(EINVAL, std::generic_category(), "inet_pton " + address_);
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    const int error = errno;
    ::close(listen_fd_);
    throw std::system_error(error, std::generic_category(), "bind/listen " + address_);
  }
  port_ = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                     : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

HostilePeer::~HostilePeer() {
  stopping_ = true;
  const char byte = 1;
  (void)!::write(stop_pipe_[1], &byte, 1);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(mu_);
    connections.swap(connections_);
  }
  for (std::thread& thread : connections) thread.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

std::string HostilePeer::url(std::string_view target) const {
  const bool ipv6 = address_.find(':') != std::string::npos;
  return (ipv6 ? "http://[" + address_ + "]:" : "http://" + address_ + ":") +
         std::to_string(port_) + std::string(target);
}

std::vector<std::string> HostilePeer::request_lines() const {
  std::lock_guard lock(mu_);
  return request_lines_;
}

bool HostilePeer::wait_for(int fd, short events, int timeout_ms) const {
  pollfd fds[2] = {{fd, events, 0}, {stop_pipe_[0], POLLIN, 0}};
  const int ready = ::poll(fds, 2, timeout_ms);
  if (ready < 0) return errno == EINTR && !stopping_;
  if (stopping_ || (fds[1].revents & POLLIN) != 0) return false;
  if (ready == 0) return true;  // timed out: the caller paces itself with it
  return (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) == 0 || (fds[0].revents & events) != 0;
}

bool HostilePeer::send_all(int fd, std::string_view data) const {
  while (!data.empty()) {
    if (!wait_for(fd, POLLOUT, -1)) return false;
    const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

void HostilePeer::accept_loop() {
  while (wait_for(listen_fd_, POLLIN, -1)) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    connections_.emplace_back([this, fd] {
      serve(fd);
      ::close(fd);
    });
  }
}

void HostilePeer::serve(int fd) {
  std::string buffer;
  char chunk[4096];
  for (;;) {
    // Read one request head (keep-alive: the next one may follow on the same connection).
    std::size_t end = buffer.find("\r\n\r\n");
    while (end == std::string::npos) {
      if (!wait_for(fd, POLLIN, -1)) return;
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (got == 0) return;
      if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return;
      }
      buffer.append(chunk, static_cast<std::size_t>(got));
      end = buffer.find("\r\n\r\n");
    }
    const std::string line = buffer.substr(0, buffer.find("\r\n"));
    buffer.erase(0, end + 4);
    {
      std::lock_guard lock(mu_);
      request_lines_.push_back(line);
    }
    // "GET <target> HTTP/1.1"; an absolute target (a proxy's) counts by its path.
    std::string target = line.substr(line.find(' ') + 1);
    target = target.substr(0, target.rfind(' '));
    if (const auto scheme = target.find("://");
        !target.starts_with('/') && scheme != std::string::npos) {
      const auto slash = target.find('/', scheme + 3);
      target = slash == std::string::npos ? "/" : target.substr(slash);
    }

    if (target == "/continue-then-silence") {
      if (!send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;
      while (wait_for(fd, POLLIN, -1)) {
        if (::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT) == 0) return;
      }
      return;
    }
    if (target == "/empty-location" || target == "/blank-location" || target == "/no-location") {
      const char* location = target == "/empty-location"   ? "Location: \r\n"
                             : target == "/blank-location" ? "Location:    \r\n"
                                                           : "";
      if (!send_all(fd, response("302 Found", location, ""))) return;
      continue;
    }
    if (target == "/switching-protocols") {
      // Unasked for: the client sent no Upgrade.
      (void)send_all(fd, "HTTP/1.1 101 Switching Protocols\r\n\r\n");
      return;
    }
    if (target.starts_with("/redirect/")) {
      int left = 0;
      std::from_chars(target.data() + 10, target.data() + target.size(), left);
      const std::string reply =
          left <= 0 ? response("200 OK", "", "redirected")
                    : response("302 Found",
                               "Location: /redirect/" + std::to_string(left - 1) + "\r\n", "");
      if (!send_all(fd, reply)) return;
      continue;
    }
    if (target.starts_with("/redirect-to?")) {
      if (!send_all(fd, response("302 Found", "Location: " + target.substr(13) + "\r\n", ""))) {
        return;
      }
      continue;
    }
    if (target == "/endless" || target == "/huge-length") {
      const std::string data(16 * 1024, 'x');
      std::string chunked = "4000\r\n" + data + "\r\n";
      const bool endless = target == "/endless";
      if (!send_all(fd, endless ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                : "HTTP/1.1 200 OK\r\nContent-Length: 5368709120\r\n\r\n")) {
        return;
      }
      while (send_all(fd, endless ? chunked : data)) {
      }
      return;
    }
    if (target == "/trickle") {
      if (!send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")) return;
      // The pace is the behaviour under test (a slow server), not a synchronization.
      while (wait_for(fd, POLLIN, 100)) {
        if (!send_all(fd, "tttttttttt")) return;
      }
      return;
    }
    if (!send_all(fd, response("200 OK", "", "peer " + address_))) return;
  }
}

}  // namespace crew::testing
