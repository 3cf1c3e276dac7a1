// crew::LatencyServer: a loopback HTTP/1.1 server that answers every request after a latency, so
// that IO-bound demos, tests and benchmarks run on this machine with network-like waits and no
// internet. Each request's latency is an Asio timer, not a thread: thousands of connections can
// wait at once on one thread.
//
// Any path serves a generated body (GET or HEAD); the query can override, per request:
//   latency=50ms   the wait before the response (0, 250ms, 1.5s, a bare number is ms; ≤ 1 hour)
//   bytes=5KiB     the body size (5000, 5KB, 5KiB, 20MiB, 1GiB; ≤ 4 GiB), streamed in chunks
//   status=404     the status code (200 … 599; 204 and 304 carry no body)
//   reset=1        send the headers and half the body, then reset the connection (RST)
//   stall=1        send the headers and the first few (≤ 16) body bytes, then nothing more until
//                  the client closes or the server stops (slow-loris)
// An unknown parameter or value gets 400 with a one-line message. GET /stats returns the counters
// as JSON ({"requests": …, "in_flight": …, "peak_in_flight": …, …}); it waits no latency and is
// not counted itself.
//
// Requests follow RFC 9112: a head may arrive in any number of reads (pipelined requests are
// answered in order), up to kMaxRequestHeadBytes (beyond: 414 or 431); a head not complete within
// header_timeout gets 408; an idle kept-alive connection is closed after keep_alive_timeout; at
// the descriptor limit idle connections are closed to accept new ones (docs/cli.md, crew serve).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace crew {

struct LatencyServerOptions {
  // A numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "0.0.0.0"); no name lookup.
  std::string bind_address = "127.0.0.1";
  // 0: an ephemeral port, which port() reports once started.
  std::uint16_t port = 0;
  // The latency and body size of a request that does not override them.
  std::chrono::milliseconds latency{0};
  std::uint64_t body_bytes = 0;
  // Threads that run the server's io_context; 1 holds thousands of waiting connections.
  std::size_t threads = 1;
  // A request head (request line and header fields) not complete this long after its first byte
  // (or, on a new connection, after the accept) gets 408 Request Timeout and the connection is
  // closed, as nginx's client_header_timeout. 1 ms to 1 hour.
  std::chrono::milliseconds header_timeout = std::chrono::seconds(60);
  // A kept-alive connection that sends no byte of its next request this long after its last
  // response is closed quietly (no response), as nginx's keepalive_timeout. 1 ms to 1 hour.
  std::chrono::milliseconds keep_alive_timeout = std::chrono::seconds(75);
  // A response that the client does not read (no write progress) for this long is abandoned and
  // the connection closed, as nginx's send_timeout; stall=1 responses stall by request and are
  // exempt. 1 ms to 1 hour.
  std::chrono::milliseconds send_timeout = std::chrono::seconds(60);
};

struct LatencyServerStats {
  std::uint64_t requests = 0;        // requests parsed (malformed ones and /stats excluded)
  std::uint64_t in_flight = 0;       // requests waiting their latency or sending their response
  std::uint64_t peak_in_flight = 0;  // the most in flight at once since the server was made
  std::uint64_t bad_requests = 0;    // refused: answered 400, 405, 414, 431 or 505
  std::uint64_t connections = 0;     // accepted since the server was made
  std::uint64_t open_connections = 0;
  // Connections closed for a timeout: a head not complete within header_timeout (answered 408),
  // an idle keep-alive past keep_alive_timeout, or a response unread for send_timeout.
  std::uint64_t timeouts = 0;
  // Idle connections (and half-closed ones waiting a latency) closed at the descriptor limit to
  // make room for new ones.
  std::uint64_t reclaimed = 0;
};

// The largest per-request latency and body size.
inline constexpr std::chrono::milliseconds kMaxLatency = std::chrono::hours(1);
inline constexpr std::uint64_t kMaxBodyBytes = std::uint64_t{4} << 30;
// The largest request head (empty lines before the request line, the request line, the header
// fields and the blank line after them): a longer request line gets 414 URI Too Long, longer
// header fields 431 Request Header Fields Too Large, and the connection is closed.
inline constexpr std::size_t kMaxRequestHeadBytes = 16 * 1024;

class LatencyServer {
 public:
  // Checks the options; binds nothing yet. Throws: std::invalid_argument naming the option
  // (bind_address not a numeric address, threads 0 or above 64, latency or body_bytes above the
  // maximum).
  explicit LatencyServer(LatencyServerOptions options = {});
  // Stops the server if it runs. Blocks: as stop().
  ~LatencyServer();
  LatencyServer(const LatencyServer&) = delete;
  LatencyServer& operator=(const LatencyServer&) = delete;

  // Binds, listens and starts the server's threads; when it returns, connections are accepted and
  // port() is the bound port. Calling it while running does nothing; after stop() it starts again
  // (on the same port when options.port was nonzero, else on a new ephemeral one).
  // Throws: std::system_error when the address cannot be bound (in use, not local) or no thread
  // can be started. Thread safety: start, stop, port and stats may be called from any thread
  // except the server's own.
  void start();

  // Closes the listening socket and every connection — waiting, streaming or stalled — and joins
  // the server's threads. A client sees its connection closed (EOF, or a reset). Idempotent.
  // Blocks: until the threads have joined (milliseconds). Throws: nothing.
  void stop() noexcept;

  [[nodiscard]] bool running() const noexcept;
  // The bound port while running (or after stop, the last one); 0 before the first start.
  [[nodiscard]] std::uint16_t port() const noexcept;
  // A snapshot of the counters. Thread safety: safe, at any time.
  [[nodiscard]] LatencyServerStats stats() const noexcept;

  // The body byte at `offset`: bodies are 32-byte lines, each the line's offset as 16 lowercase
  // hex digits, a space, "abcdefghijklmn" and '\n', so any byte of any body can be checked alone
  // and a lost or repeated chunk shows. Thread safety: safe.
  [[nodiscard]] static char body_byte(std::uint64_t offset) noexcept;
  // Writes the body bytes [offset, offset + out.size()) into out. Thread safety: safe.
  static void fill_body(std::uint64_t offset, std::span<char> out) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "250ms", "2s", "1.5s", "0", or a bare number of milliseconds → a duration of whole
// milliseconds in [0, kMaxLatency]. Throws: std::invalid_argument with a message that quotes
// `text`. Thread safety: safe.
[[nodiscard]] std::chrono::milliseconds parse_latency(std::string_view text);

// "5000", "5000B", "5KB" / "5MB" / "5GB" (powers of 1000), "5KiB" / "5MiB" / "5GiB" (powers of
// 1024) → bytes in [0, kMaxBodyBytes]. Whole numbers only. Throws: std::invalid_argument with a
// message that quotes `text`. Thread safety: safe.
[[nodiscard]] std::uint64_t parse_byte_size(std::string_view text);

}  // namespace crew
