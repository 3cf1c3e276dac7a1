// A small HTTP/1.1 peer on loopback that misbehaves on purpose, for the fetch tests: what a hostile
// or broken server (or a proxy) does to crew's client. Plain sockets and poll, one thread per
// connection; the test starts it and its destructor stops it and joins every thread.
//
// What it answers, by the request's path (an absolute target, as a proxy gets, counts by its path):
//   /continue-then-silence   "100 Continue", then nothing until the client gives up
//   /empty-location          302 with "Location: " and no value
//   /blank-location          302 with a Location of blanks only
//   /no-location             302 with no Location at all
//   /switching-protocols     an unasked-for "101 Switching Protocols", then the connection closes
//   /redirect/N              302 to /redirect/N-1; /redirect/0 answers 200
//   /redirect-to?URL         302 to URL (verbatim)
//   /endless                 200, chunked, a body that never ends
//   /huge-length             200, "Content-Length: 5368709120", then bytes until the client leaves
//   /trickle                 200, "Content-Length: 1000000", then 10 bytes every 100 ms
//   anything else            200, body "peer <address>" (so a test can tell who answered)
// Every request line it receives is recorded, in order.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace crew::testing {

class HostilePeer {
 public:
  // Listens on `address` (IPv4 or IPv6 literal, loopback) on a free port. Throws:
  // std::system_error when the socket cannot be bound (e.g. no IPv6 here).
  explicit HostilePeer(std::string address = "127.0.0.1");
  ~HostilePeer();
  HostilePeer(const HostilePeer&) = delete;
  HostilePeer& operator=(const HostilePeer&) = delete;

  std::uint16_t port() const { return port_; }
  // "http://<address>:<port><target>" (brackets around an IPv6 address).
  std::string url(std::string_view target) const;
  // "GET /ok HTTP/1.1", "GET http://127.0.0.2:4242/ok HTTP/1.1", … in the order they came.
  std::vector<std::string> request_lines() const;

 private:
  void accept_loop();
  void serve(int fd);
  // Waits until `fd` is ready for `events` or the peer stops; false when stopping or on error.
  bool wait_for(int fd, short events, int timeout_ms) const;
  bool send_all(int fd, std::string_view data) const;

  std::string address_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // readable once the peer stops: wakes every poll
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::vector<std::string> request_lines_;  // guarded by mu_
  std::vector<std::thread> connections_;    // guarded by mu_; joined by the destructor
  std::thread acceptor_;
};

}  // namespace crew::testing
