// One client connection of crew::LatencyServer: reads request heads (any number of reads each,
// pipelined ones in order), answers each after its latency, and keeps the connection's deadlines:
// a head must be complete within header_timeout, an idle kept-alive connection is closed after
// keep_alive_timeout, a response the client stops reading is abandoned after send_timeout, and a
// connection closing after an error lingers briefly so that the client reads its response before a
// reset could destroy it.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crew/latency_server.hpp"
#include "server/idle_connections.hpp"
#include "server/request_head.hpp"
#include "server/response_plan.hpp"

namespace crew::detail {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
// Every connection's socket runs its handlers on its own strand, so with options.threads > 1 one
// connection's handlers never run at once; with one thread the strand costs next to nothing.
using Socket = boost::asio::ip::tcp::socket::rebind_executor<Strand>::other;

// Shared by the server and its connections; lives in LatencyServer::Impl, which outlives every
// connection (they are destroyed with the io_context, in stop()).
struct Counters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> peak_in_flight{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> reclaimed{0};

  void enter() noexcept;
  void leave() noexcept { in_flight.fetch_sub(1); }
  [[nodiscard]] LatencyServerStats snapshot() const noexcept;
};

// What every connection of one server shares; outlives them, as Counters.
struct ConnectionContext {
  std::chrono::milliseconds latency{0};
  std::uint64_t body_bytes = 0;
  std::chrono::milliseconds header_timeout{0};
  std::chrono::milliseconds keep_alive_timeout{0};
  std::chrono::milliseconds send_timeout{0};
  Counters* counters = nullptr;
  IdleConnections* idle = nullptr;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Socket socket, const ConnectionContext& context);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading the first request. Call once, right after make_shared.
  void start();
  // Closes the connection if it still waits for the first byte of a request, or waits a
  // request's latency for a client that half-closed (the server makes room at the descriptor
  // limit); else leaves it be. Thread safety: safe (runs on its strand).
  void close_if_idle();

 private:
  // What the connection is doing; the deadline timer acts on kHead, kSending and kLinger.
  enum class Phase { kHead, kBusy, kSending, kLinger, kClosed };

  void read_request();
  void read_some();
  void on_readable(boost::system::error_code ec);
  void on_read(boost::system::error_code ec, std::size_t bytes);
  void process_input();
  void on_head_timeout();
  void arm_deadline(std::chrono::milliseconds after);
  void on_deadline(boost::system::error_code ec);
  void handle(std::string_view head);
  void watch();
  void on_watch(boost::system::error_code ec, std::size_t bytes);
  void on_latency_elapsed();
  void reply_error(unsigned status, std::string_view message, bool keep_alive);
  void send(Plan plan);
  void write_chunk();
  void after_chunk();
  void drain();
  void finish();
  void linger_then_close();
  void linger_read();
  void close_now() noexcept;
  void leave() noexcept;

  Socket socket_;
  boost::asio::steady_timer latency_timer_;
  // The head, keep-alive, send or linger deadline, as phase_ says.
  boost::asio::steady_timer deadline_;
  const ConnectionContext& context_;
  Phase phase_ = Phase::kHead;
  // Bytes received and not yet consumed: the head being read, then any pipelined requests.
  std::string input_;
  RequestHeadScanner scanner_;
  std::uint64_t served_ = 0;      // responses finished on this connection
  bool timed_out_ = false;        // the head deadline passed while a read was outstanding
  bool waiting_latency_ = false;  // a request waits its latency
  bool watching_ = false;         // a read is outstanding during that wait (see watch())
  bool peer_closed_ = false;      // the client's EOF was read: it sends nothing more
  IdleConnections::Slot idle_slot_;
  Plan plan_;
  std::string head_;
  std::vector<char> chunk_;
  std::uint64_t sent_ = 0;   // body bytes written
  std::uint64_t limit_ = 0;  // body bytes to write before the end, a reset or a stall
  bool head_sent_ = false;
  // True from a counted request's parse until its response ends (or the connection does).
  bool in_flight_ = false;
  std::array<char, 4096> read_buffer_{};
};

}  // namespace crew::detail
