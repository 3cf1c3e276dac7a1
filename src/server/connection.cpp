#include "server/connection.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <stdexcept>
#include <utility>

namespace crew::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// Bodies are generated and written this much at a time, so a 1 GiB body costs 64 KiB of memory.
constexpr std::size_t kBodyChunk = 64 * 1024;
// stall=1 sends at most this many body bytes before going quiet.
constexpr std::uint64_t kStallBytes = 16;
// After its last response a closing connection reads (and drops) what the client still sends, up
// to this long, before closing: closing with unread bytes would send a reset, which can destroy
// the response in the client's receive buffer before it is read (nginx's lingering_timeout).
constexpr std::chrono::milliseconds kLingerTimeout{2000};

}  // namespace

void Counters::enter() noexcept {
  const std::uint64_t now = in_flight.fetch_add(1) + 1;
  std::uint64_t peak = peak_in_flight.load();
  while (now > peak && !peak_in_flight.compare_exchange_weak(peak, now)) {
  }
}

LatencyServerStats Counters::snapshot() const noexcept {
  return {.requests = requests.load(),
          .in_flight = in_flight.load(),
          .peak_in_flight = peak_in_flight.load(),
          .bad_requests = bad_requests.load(),
          .connections = connections.load(),
          .open_connections = open_connections.load(),
          .timeouts = timeouts.load(),
          .reclaimed = reclaimed.load()};
}

Connection::Connection(Socket socket, const ConnectionContext& context)
    : socket_(std::move(socket)),
      latency_timer_(socket_.get_executor()),
      deadline_(socket_.get_executor()),
      context_(context),
      scanner_(kMaxRequestHeadBytes) {
  context_.counters->connections.fetch_add(1);
  context_.counters->open_connections.fetch_add(1);
}

Connection::~Connection() {
  context_.idle->remove(idle_slot_);
  if (in_flight_) context_.counters->leave();
  context_.counters->open_connections.fetch_sub(1);
}

void Connection::start() {
  // The accept handler runs outside this connection's strand: everything from here on runs on it,
  // so the header deadline armed below cannot fire on another thread before the read is set up.
  asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
    error_code ignored;
    self->socket_.non_blocking(true, ignored);
    self->read_request();
  });
}

void Connection::close_if_idle() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    // Bytes waiting in the kernel: the client has begun a request, the connection is not idle.
    error_code ec;
    const bool idle = self->phase_ == Phase::kHead && self->input_.empty() &&
                      self->socket_.available(ec) == 0 && !ec;
    const bool half_closed_waiting = self->peer_closed_ && self->waiting_latency_;
    if (!idle && !half_closed_waiting) return;
    self->context_.counters->reclaimed.fetch_add(1);
    self->close_now();
  });
}

void Connection::read_request() {
  phase_ = Phase::kHead;
  timed_out_ = false;
  scanner_.reset();
  if (peer_closed_ && input_.empty()) {
    // The client half-closed and every request it sent is answered: nothing more can come.
    close_now();
    return;
  }
  if (!input_.empty()) {
    // A pipelined request: its bytes are here, its head's time starts now.
    arm_deadline(context_.header_timeout);
    process_input();
    return;
  }
  // Nothing received yet: a new connection's head time starts at the accept; a kept-alive one
  // waits keep_alive_timeout for its next request's first byte.
  context_.idle->add(served_ == 0 ? IdleConnections::Kind::kNew : IdleConnections::Kind::kKeptAlive,
                     weak_from_this(), idle_slot_);
  arm_deadline(served_ == 0 ? context_.header_timeout : context_.keep_alive_timeout);
  read_some();
}

// Waits until the socket is readable and only then reads, so that no bytes leave the kernel
// before on_readable runs: close_if_idle, on the same strand, sees in available() whether the
// client has sent anything. (A plain async_read_some may already have taken the client's first
// bytes while its handler waits its turn; closing then would lose a request it has sent.)
void Connection::read_some() {
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
}

void Connection::on_readable(error_code ec) {
  if (ec) {
    on_read(ec, 0);
    return;
  }
  // The socket is non-blocking (start()): a spurious wake-up reads would_block, and waits again.
  const std::size_t bytes = socket_.read_some(asio::buffer(read_buffer_), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    if (phase_ == Phase::kClosed) return;
    if (timed_out_) {
      on_head_timeout();
      return;
    }
    read_some();
    return;
  }
  on_read(ec, bytes);
}

void Connection::on_read(error_code ec, std::size_t bytes) {
  if (phase_ == Phase::kClosed) return;
  // The deadline passed: whatever this read brought comes too late.
  if (timed_out_) {
    on_head_timeout();
    return;
  }
  // EOF or a reset: nothing to answer. Closed now, not when the pending deadline would have let
  // go of this connection (up to keep_alive_timeout later), so its descriptor is free at once.
  if (ec) {
    close_now();
    return;
  }
  if (input_.empty() && bytes > 0) {
    context_.idle->remove(idle_slot_);
    if (served_ > 0) arm_deadline(context_.header_timeout);
  }
  input_.append(read_buffer_.data(), bytes);
  process_input();
}

void Connection::process_input() {
  HeadScan scan = scanner_.scan(input_);
  switch (scan.kind) {
    case HeadScan::Kind::kNeedMore:
      read_some();
      return;
    case HeadScan::Kind::kRefused:
      phase_ = Phase::kBusy;
      deadline_.cancel();
      reply_error(scan.status, scan.message, false);
      return;
    case HeadScan::Kind::kComplete: {
      phase_ = Phase::kBusy;
      deadline_.cancel();
      const std::string head = input_.substr(0, scan.head_bytes);
      input_.erase(0, scan.head_bytes);
      handle(head);
      return;
    }
  }
}

void Connection::on_head_timeout() {
  context_.counters->timeouts.fetch_add(1);
  if (input_.empty() && served_ > 0) {
    // An idle kept-alive connection: closed quietly, as a client reusing it expects might happen.
    close_now();
    return;
  }
  phase_ = Phase::kBusy;
  reply_error(408,
              fmt::format("request head not received within {} ms (the header timeout)",
                          context_.header_timeout.count()),
              false);
}

void Connection::arm_deadline(std::chrono::milliseconds after) {
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this()](error_code ec) { self->on_deadline(ec); });
}

void Connection::on_deadline(error_code ec) {
  // A wait cancelled, or one that completed just before the deadline moved or was cancelled.
  if (ec || deadline_.expiry() > std::chrono::steady_clock::now()) return;
  if (phase_ == Phase::kHead) {
    // The read handler answers (408) or closes: it runs once the read is cancelled.
    timed_out_ = true;
    error_code ignored;
    socket_.cancel(ignored);
  } else if (phase_ == Phase::kSending) {
    // The client stopped reading: the response is abandoned (the destructor ends its count).
    context_.counters->timeouts.fetch_add(1);
    close_now();
  } else if (phase_ == Phase::kLinger) {
    close_now();
  }
}

void Connection::handle(std::string_view head) {
  const RequestHead request = parse_request_head(head);
  if (request.status != 0) {
    reply_error(request.status, request.error, false);
    return;
  }
  Plan plan;
  plan.latency = context_.latency;
  plan.body_bytes = context_.body_bytes;
  plan.keep_alive = request.keep_alive;
  if (request.method != "GET" && request.method != "HEAD") {
    context_.counters->bad_requests.fetch_add(1);
    Plan refused;
    refused.status = 405;
    refused.text = "only GET and HEAD are served\n";
    refused.extra_fields = "Allow: GET, HEAD\r\n";
    refused.keep_alive = plan.keep_alive;
    send(std::move(refused));
    return;
  }
  if (!request.target.starts_with('/')) {
    reply_error(400, "the request target must be a path starting with '/' or an http:// URL",
                false);
    return;
  }
  plan.head = request.method == "HEAD";
  const std::string_view target = request.target;
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  if (path == "/stats") {
    const LatencyServerStats stats = context_.counters->snapshot();
    plan.text = fmt::format(
        "{{\"requests\": {}, \"in_flight\": {}, \"peak_in_flight\": {}, \"bad_requests\": {}, "
        "\"connections\": {}, \"open_connections\": {}, \"timeouts\": {}, \"reclaimed\": {}}}\n",
        stats.requests, stats.in_flight, stats.peak_in_flight, stats.bad_requests,
        stats.connections, stats.open_connections, stats.timeouts, stats.reclaimed);
    plan.content_type = "application/json";
    send(std::move(plan));
    return;
  }

  context_.counters->requests.fetch_add(1);
  try {
    apply_query(query, plan);
  } catch (const std::invalid_argument& error) {
    reply_error(400, error.what(), plan.keep_alive);
    return;
  }
  in_flight_ = true;
  context_.counters->enter();
  if (plan.latency.count() == 0) {
    send(std::move(plan));
    return;
  }
  plan_ = std::move(plan);
  waiting_latency_ = true;
  latency_timer_.expires_after(plan_.latency);
  latency_timer_.async_wait([self = shared_from_this()](error_code ec) {
    // A close (at the descriptor limit) may come after the timer fired and before this ran.
    if (!ec && self->phase_ != Phase::kClosed) self->on_latency_elapsed();
  });
  watch();
}

// Reads while a request waits its latency, so that a client that leaves with a reset frees its
// connection at once instead of when the latency ends (up to an hour). What it reads is the next
// pipelined requests, kept in input_; beyond a head's worth it stops reading, and a client that
// leaves then is noticed when the response is written. EOF is no reset: a client that
// half-closes (shutdown SHUT_WR) after its requests still waits for the answers, and one that
// closed cannot be told from it until a write fails; so the requests are answered after their
// latency, as HAProxy does by default, and meanwhile the connection is one the server may close
// at the descriptor limit (IdleConnections::Kind::kHalfClosed).
void Connection::watch() {
  if (peer_closed_ || input_.size() > kMaxRequestHeadBytes) return;
  watching_ = true;
  socket_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](error_code ec, std::size_t bytes) { self->on_watch(ec, bytes); });
}

void Connection::on_watch(error_code ec, std::size_t bytes) {
  watching_ = false;
  if (phase_ == Phase::kClosed) return;
  if (!ec) input_.append(read_buffer_.data(), bytes);
  if (ec == asio::error::eof) {
    peer_closed_ = true;
    if (waiting_latency_) {
      context_.idle->add(IdleConnections::Kind::kHalfClosed, weak_from_this(), idle_slot_);
    }
  }
  if (!waiting_latency_) {
    // The latency ended and cancelled this read (or it completed just before): answer now.
    send(std::move(plan_));
  } else if (ec && ec != asio::error::eof) {
    close_now();
  } else if (!ec) {
    watch();
  }
}

void Connection::on_latency_elapsed() {
  waiting_latency_ = false;
  context_.idle->remove(idle_slot_);
  if (watching_) {
    // on_watch answers once the read is cancelled: one read at a time on the socket.
    error_code ignored;
    socket_.cancel(ignored);
    return;
  }
  send(std::move(plan_));
}

void Connection::reply_error(unsigned status, std::string_view message, bool keep_alive) {
  if (status != 408) context_.counters->bad_requests.fetch_add(1);
  // Messages quote what the client sent (a query value, a field): never more than this of it.
  constexpr std::size_t kMaxMessageBytes = 200;
  Plan plan;
  plan.status = status;
  plan.text = message.size() <= kMaxMessageBytes
                  ? fmt::format("{}\n", message)
                  : fmt::format("{}… ({} bytes in all)\n", message.substr(0, kMaxMessageBytes),
                                message.size());
  plan.keep_alive = keep_alive;
  send(std::move(plan));
}

void Connection::send(Plan plan) {
  plan_ = std::move(plan);
  const bool no_body = plan_.status == 204 || plan_.status == 304;
  const std::uint64_t length = no_body ? 0 : plan_.text ? plan_.text->size() : plan_.body_bytes;
  head_ = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{}", plan_.status,
                      reason_phrase(plan_.status), plan_.content_type, plan_.extra_fields);
  if (!no_body) head_ += fmt::format("Content-Length: {}\r\n", length);
  head_ += plan_.keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (plan_.head || no_body) {
    plan_.text = std::string();
    plan_.body_bytes = 0;
  }
  phase_ = Phase::kSending;
  if (plan_.text) {
    arm_deadline(context_.send_timeout);
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(*plan_.text)};
    asio::async_write(socket_, buffers, [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec) {
        self->close_now();
      } else {
        self->finish();
      }
    });
    return;
  }
  sent_ = 0;
  head_sent_ = false;
  limit_ = plan_.reset   ? plan_.body_bytes / 2
           : plan_.stall ? std::min(kStallBytes, plan_.body_bytes - 1)
                         : plan_.body_bytes;
  write_chunk();
}

// Writes the head (the first time) and the next chunk of the body up to limit_.
void Connection::write_chunk() {
  const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kBodyChunk, limit_ - sent_));
  chunk_.resize(size);
  LatencyServer::fill_body(sent_, chunk_);
  std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(chunk_)};
  if (head_sent_) buffers[0] = asio::const_buffer();
  // Re-armed for every chunk: a slow reader that keeps up with 64 KiB per send_timeout is served.
  arm_deadline(context_.send_timeout);
  asio::async_write(socket_, buffers,
                    [self = shared_from_this(), size](error_code ec, std::size_t) {
                      if (ec) {
                        self->close_now();
                        return;
                      }
                      self->head_sent_ = true;
                      self->sent_ += size;
                      self->after_chunk();
                    });
}

void Connection::after_chunk() {
  if (sent_ < limit_) {
    write_chunk();
  } else if (plan_.reset) {
    // SO_LINGER 0: close sends RST instead of FIN, so the client sees a reset mid-body.
    leave();
    error_code ignored;
    socket_.set_option(asio::socket_base::linger(true, 0), ignored);
    close_now();
  } else if (plan_.stall) {
    // Stays in flight until the client gives up or the server stops; reads only to notice
    // the client closing (the destructor then closes our end).
    phase_ = Phase::kBusy;
    deadline_.cancel();
    drain();
  } else {
    finish();
  }
}

void Connection::drain() {
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            if (ec) {
                              self->close_now();
                            } else {
                              self->drain();
                            }
                          });
}

void Connection::finish() {
  leave();
  chunk_ = {};
  ++served_;
  if (plan_.keep_alive) {
    read_request();
  } else {
    linger_then_close();
  }
}

void Connection::linger_then_close() {
  phase_ = Phase::kLinger;
  input_.clear();
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  arm_deadline(std::min(kLingerTimeout, context_.header_timeout));
  linger_read();
}

void Connection::linger_read() {
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            if (self->phase_ != Phase::kLinger) return;
                            if (ec) {
                              self->close_now();
                            } else {
                              self->linger_read();
                            }
                          });
}

void Connection::close_now() noexcept {
  phase_ = Phase::kClosed;
  context_.idle->remove(idle_slot_);
  error_code ignored;
  deadline_.cancel();
  latency_timer_.cancel();
  socket_.close(ignored);
}

void Connection::leave() noexcept {
  if (in_flight_) {
    in_flight_ = false;
    context_.counters->leave();
  }
}

}  // namespace crew::detail
