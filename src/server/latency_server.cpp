#include "crew/latency_server.hpp"

#include "crew/duration.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace crew {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;
// Every connection's socket runs its handlers on its own strand, so with options.threads > 1 one
// connection's handlers never run at once; with one thread the strand costs next to nothing.
using Socket = tcp::socket::rebind_executor<Strand>::other;

// A request's head (request line and headers) must fit here; a longer one gets 400 and is closed.
constexpr std::size_t kMaxRequestHead = 16 * 1024;
// Bodies are generated and written this much at a time, so a 1 GiB body costs 64 KiB of memory.
constexpr std::size_t kBodyChunk = 64 * 1024;
// stall=1 sends at most this many body bytes before going quiet.
constexpr std::uint64_t kStallBytes = 16;
constexpr std::size_t kMaxThreads = 64;
constexpr std::chrono::milliseconds kAcceptRetry{50};

constexpr std::string_view kLineTail = " abcdefghijklmn\n";  // bytes 16..31 of every body line
constexpr std::uint64_t kLineBytes = 32;

std::invalid_argument bad_latency(std::string_view text) {
  return std::invalid_argument(
      fmt::format("expected a duration such as 250ms, 2s or 1.5s (a bare number is milliseconds), "
                  "at most 3600s, got \"{}\"",
                  text));
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

std::string_view reason_phrase(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

// Shared by the server and its connections; lives in LatencyServer::Impl, which outlives every
// connection (they are destroyed with the io_context, in stop()).
struct Counters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> peak_in_flight{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> open_connections{0};

  void enter() noexcept {
    const std::uint64_t now = in_flight.fetch_add(1) + 1;
    std::uint64_t peak = peak_in_flight.load();
    while (now > peak && !peak_in_flight.compare_exchange_weak(peak, now)) {
    }
  }
  void leave() noexcept { in_flight.fetch_sub(1); }

  LatencyServerStats snapshot() const noexcept {
    return {.requests = requests.load(),
            .in_flight = in_flight.load(),
            .peak_in_flight = peak_in_flight.load(),
            .bad_requests = bad_requests.load(),
            .connections = connections.load(),
            .open_connections = open_connections.load()};
  }
};

struct Defaults {
  std::chrono::milliseconds latency{0};
  std::uint64_t body_bytes = 0;
};

// What one response will be.
struct Plan {
  unsigned status = 200;
  std::chrono::milliseconds latency{0};
  std::uint64_t body_bytes = 0;  // the generated body, when text is unset
  std::optional<std::string> text;
  std::string_view content_type = "text/plain";
  bool head = false;
  bool keep_alive = true;
  bool reset = false;
  bool stall = false;
};

bool parse_flag(std::string_view name, std::string_view value) {
  if (value == "1" || value == "true") return true;
  if (value == "0" || value == "false") return false;
  throw std::invalid_argument(
      fmt::format("{} must be 1, 0, true or false, got \"{}\"", name, value));
}

// Applies the query's overrides to `plan`. Throws: std::invalid_argument with the 400 message.
void apply_query(std::string_view query, Plan& plan) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("query parameter \"{}\" has no value", pair));
    }
    const std::string_view name = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    if (name == "latency") {
      try {
        plan.latency = parse_latency(value);
      } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(fmt::format("latency: {}", error.what()));
      }
    } else if (name == "bytes") {
      try {
        plan.body_bytes = parse_byte_size(value);
      } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(fmt::format("bytes: {}", error.what()));
      }
    } else if (name == "status") {
      unsigned status = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), status);
      if (ec != std::errc() || end != value.data() + value.size() || status < 200 || status > 599) {
        throw std::invalid_argument(
            fmt::format("status must be a number from 200 to 599, got \"{}\"", value));
      }
      plan.status = status;
    } else if (name == "reset") {
      plan.reset = parse_flag(name, value);
    } else if (name == "stall") {
      plan.stall = parse_flag(name, value);
    } else {
      throw std::invalid_argument(fmt::format(
          "unknown query parameter \"{}\" (known: latency, bytes, status, reset, stall)", name));
    }
  }
  if (plan.reset && plan.stall) {
    throw std::invalid_argument("reset=1 and stall=1 cannot be combined");
  }
  if ((plan.reset || plan.stall) && (plan.head || plan.body_bytes == 0)) {
    throw std::invalid_argument("reset=1 and stall=1 need a GET with a body of at least 1 byte");
  }
}

// Where a request head ends, for async_read_until: after the blank line, or at once when the first
// byte cannot start an HTTP method (a TLS ClientHello starts with 0x16), so that such a client
// gets its 400 now instead of waiting out its timeout for a blank line that never comes.
struct RequestHeadEnd {
  template <class Iterator>
  std::pair<Iterator, bool> operator()(Iterator begin, Iterator end) const {
    if (begin != end && !(*begin >= 'A' && *begin <= 'Z')) return {end, true};
    static constexpr std::string_view kBlankLine = "\r\n\r\n";
    const Iterator found = std::search(begin, end, kBlankLine.begin(), kBlankLine.end());
    if (found == end) return {end, false};
    return {std::next(found, static_cast<std::ptrdiff_t>(kBlankLine.size())), true};
  }
};

}  // namespace
}  // namespace crew

template <>
struct boost::asio::is_match_condition<crew::RequestHeadEnd> : std::true_type {};

namespace crew {
namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Socket socket, Defaults defaults, Counters& counters)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        input_(kMaxRequestHead),
        defaults_(defaults),
        counters_(counters) {
    counters_.connections.fetch_add(1);
    counters_.open_connections.fetch_add(1);
  }

  ~Connection() {
    if (in_flight_) counters_.leave();
    counters_.open_connections.fetch_sub(1);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() { read_request(); }

 private:
  void read_request() {
    // A pipelined next request may already be in input_; async_read_until looks there first.
    asio::async_read_until(socket_, input_, RequestHeadEnd{},
                           [self = shared_from_this()](error_code ec, std::size_t head_bytes) {
                             self->on_request(ec, head_bytes);
                           });
  }

  void on_request(error_code ec, std::size_t head_bytes) {
    if (ec == asio::error::not_found) {
      reply_bad_request("request head larger than 16 KiB", false);
      return;
    }
    // EOF, a reset or the server stopping: nothing to answer; the destructor closes the socket.
    if (ec) return;
    const auto data = input_.data();
    std::string head(asio::buffers_begin(data),
                     asio::buffers_begin(data) + static_cast<std::ptrdiff_t>(head_bytes));
    input_.consume(head_bytes);
    if (!head.ends_with("\r\n\r\n")) {
      // Answered at once, so a client speaking TLS to this plain-HTTP server fails fast.
      reply_bad_request("not an HTTP request (for TLS, use an https server)", false);
      return;
    }
    handle(head);
  }

  void handle(std::string_view head) {
    head.remove_suffix(4);  // the blank line
    const std::size_t eol = head.find("\r\n");
    const std::string_view request_line = head.substr(0, eol);
    std::string_view fields =
        eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    const std::size_t sp1 = request_line.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos ||
        request_line.find(' ', sp2 + 1) != std::string_view::npos) {
      reply_bad_request("malformed request line", false);
      return;
    }
    const std::string_view method = request_line.substr(0, sp1);
    const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = request_line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
      reply_bad_request("only HTTP/1.1 and HTTP/1.0 are served", false);
      return;
    }
    if (!target.starts_with('/')) {
      reply_bad_request("the request target must be a path starting with '/'", false);
      return;
    }
    Plan plan;
    plan.latency = defaults_.latency;
    plan.body_bytes = defaults_.body_bytes;
    plan.keep_alive = version == "HTTP/1.1";
    while (!fields.empty()) {
      const std::size_t end = fields.find("\r\n");
      const std::string_view field = fields.substr(0, end);
      fields = end == std::string_view::npos ? std::string_view() : fields.substr(end + 2);
      const std::size_t colon = field.find(':');
      if (colon == std::string_view::npos || colon == 0) {
        reply_bad_request("malformed header field", false);
        return;
      }
      const std::string name = lower(field.substr(0, colon));
      const std::string value = lower(trim(field.substr(colon + 1)));
      if (name == "connection") {
        if (value.find("close") != std::string::npos) plan.keep_alive = false;
        if (value.find("keep-alive") != std::string::npos) plan.keep_alive = true;
      } else if ((name == "content-length" && value != "0") || name == "transfer-encoding") {
        // The server has no use for a request body; refusing it keeps the framing simple.
        reply_bad_request("request bodies are not accepted", false);
        return;
      }
    }

    if (method != "GET" && method != "HEAD") {
      counters_.bad_requests.fetch_add(1);
      Plan refused;
      refused.status = 405;
      refused.text = "only GET and HEAD are served\n";
      refused.keep_alive = plan.keep_alive;
      send(std::move(refused));
      return;
    }
    plan.head = method == "HEAD";
    const std::size_t question = target.find('?');
    const std::string_view path = target.substr(0, question);
    const std::string_view query =
        question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

    if (path == "/stats") {
      const LatencyServerStats stats = counters_.snapshot();
      plan.text = fmt::format(
          "{{\"requests\": {}, \"in_flight\": {}, \"peak_in_flight\": {}, \"bad_requests\": {}, "
          "\"connections\": {}, \"open_connections\": {}}}\n",
          stats.requests, stats.in_flight, stats.peak_in_flight, stats.bad_requests,
          stats.connections, stats.open_connections);
      plan.content_type = "application/json";
      send(std::move(plan));
      return;
    }

    counters_.requests.fetch_add(1);
    try {
      apply_query(query, plan);
    } catch (const std::invalid_argument& error) {
      reply_bad_request(error.what(), plan.keep_alive);
      return;
    }
    in_flight_ = true;
    counters_.enter();
    if (plan.latency.count() == 0) {
      send(std::move(plan));
      return;
    }
    plan_ = std::move(plan);
    timer_.expires_after(plan_.latency);
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec) return;
      self->send(std::move(self->plan_));
    });
  }

  void reply_bad_request(std::string_view message, bool keep_alive) {
    counters_.bad_requests.fetch_add(1);
    Plan plan;
    plan.status = 400;
    plan.text = fmt::format("{}\n", message);
    plan.keep_alive = keep_alive;
    send(std::move(plan));
  }

  void send(Plan plan) {
    plan_ = std::move(plan);
    const bool no_body = plan_.status == 204 || plan_.status == 304;
    const std::uint64_t length = no_body ? 0 : plan_.text ? plan_.text->size() : plan_.body_bytes;
    head_ = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\n", plan_.status,
                        reason_phrase(plan_.status), plan_.content_type);
    if (!no_body) head_ += fmt::format("Content-Length: {}\r\n", length);
    head_ += plan_.keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (plan_.head || no_body) {
      plan_.text = std::string();
      plan_.body_bytes = 0;
    }
    if (plan_.text) {
      const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_),
                                                      asio::buffer(*plan_.text)};
      asio::async_write(socket_, buffers, [self = shared_from_this()](error_code ec, std::size_t) {
        if (!ec) self->finish();
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
  void write_chunk() {
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kBodyChunk, limit_ - sent_));
    chunk_.resize(size);
    LatencyServer::fill_body(sent_, chunk_);
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(chunk_)};
    if (head_sent_) buffers[0] = asio::const_buffer();
    asio::async_write(socket_, buffers,
                      [self = shared_from_this(), size](error_code ec, std::size_t) {
                        if (ec) return;
                        self->head_sent_ = true;
                        self->sent_ += size;
                        self->after_chunk();
                      });
  }

  void after_chunk() {
    if (sent_ < limit_) {
      write_chunk();
    } else if (plan_.reset) {
      // SO_LINGER 0: close sends RST instead of FIN, so the client sees a reset mid-body.
      leave();
      error_code ignored;
      socket_.set_option(asio::socket_base::linger(true, 0), ignored);
      socket_.close(ignored);
    } else if (plan_.stall) {
      // Stays in flight until the client gives up or the server stops; reads only to notice
      // the client closing (the destructor then closes our end).
      drain();
    } else {
      finish();
    }
  }

  void drain() {
    socket_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              if (!ec) self->drain();
                            });
  }

  void finish() {
    leave();
    chunk_ = {};
    if (plan_.keep_alive) {
      read_request();
      return;
    }
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
  }

  void leave() noexcept {
    if (in_flight_) {
      in_flight_ = false;
      counters_.leave();
    }
  }

  Socket socket_;
  asio::steady_timer timer_;
  asio::streambuf input_;
  Defaults defaults_;
  Counters& counters_;
  Plan plan_;
  std::string head_;
  std::vector<char> chunk_;
  std::uint64_t sent_ = 0;   // body bytes written
  std::uint64_t limit_ = 0;  // body bytes to write before the end, a reset or a stall
  bool head_sent_ = false;
  // True from a counted request's parse until its response ends (or the connection does).
  bool in_flight_ = false;
  std::array<char, 256> drain_{};
};

}  // namespace

// One start's worth of state: a fresh io_context per start, so stop() can simply stop it, join
// the threads and destroy it — destroying the io_context destroys every pending handler, and with
// them the last shared_ptr to every connection, which closes its socket.
struct ServerRun {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  std::vector<std::thread> threads;
};

struct LatencyServer::Impl {
  LatencyServerOptions options;
  asio::ip::address address;
  Counters counters;
  // Guards run. start() and stop() hold it throughout, so they never interleave.
  std::mutex mu;
  std::unique_ptr<ServerRun> run;
  std::atomic<bool> running{false};
  std::atomic<std::uint16_t> port{0};

  void accept(ServerRun& run_state) {
    run_state.acceptor.async_accept(
        asio::make_strand(run_state.io), [this, &run_state](error_code ec, Socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (ec) {
            // EMFILE and the like: accepting again at once would spin; the connection waits in
            // the backlog until a descriptor is free.
            run_state.retry.expires_after(kAcceptRetry);
            run_state.retry.async_wait([this, &run_state](error_code wait_ec) {
              if (!wait_ec) accept(run_state);
            });
            return;
          }
          error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          std::make_shared<Connection>(std::move(socket),
                                       Defaults{options.latency, options.body_bytes}, counters)
              ->start();
          accept(run_state);
        });
  }

  static void run_loop(asio::io_context& io) {
    for (;;) {
      try {
        io.run();
        return;
      } catch (const std::exception& error) {
        // A handler threw (out of memory, most likely): that connection is gone with the unwound
        // stack, the others go on.
        std::fprintf(stderr, "crew::LatencyServer: a connection failed: %s\n", error.what());
      }
    }
  }
};

LatencyServer::LatencyServer(LatencyServerOptions options) : impl_(std::make_unique<Impl>()) {
  error_code ec;
  impl_->address = asio::ip::make_address(options.bind_address, ec);
  if (ec) {
    throw std::invalid_argument(fmt::format(
        "bind_address must be a numeric IPv4 or IPv6 address, got \"{}\"", options.bind_address));
  }
  if (options.threads == 0 || options.threads > kMaxThreads) {
    throw std::invalid_argument(
        fmt::format("threads must be between 1 and {}, got {}", kMaxThreads, options.threads));
  }
  if (options.latency.count() < 0 || options.latency > kMaxLatency) {
    throw std::invalid_argument(fmt::format("latency must be between 0 and 3600000 ms, got {} ms",
                                            options.latency.count()));
  }
  if (options.body_bytes > kMaxBodyBytes) {
    throw std::invalid_argument(
        fmt::format("body_bytes must be at most {}, got {}", kMaxBodyBytes, options.body_bytes));
  }
  impl_->options = std::move(options);
}

LatencyServer::~LatencyServer() { stop(); }

void LatencyServer::start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->run) return;
  auto run = std::make_unique<ServerRun>();
  const tcp::endpoint endpoint(impl_->address, impl_->options.port);
  const auto fail = [&](const error_code& ec, std::string_view what) {
    return std::system_error(
        ec.value(), std::system_category(),
        fmt::format("LatencyServer: {} {}", what,
                    impl_->address.is_v6()
                        ? fmt::format("[{}]:{}", impl_->address.to_string(), impl_->options.port)
                        : fmt::format("{}:{}", impl_->address.to_string(), impl_->options.port)));
  };
  error_code ec;
  run->acceptor.open(endpoint.protocol(), ec);
  if (ec) throw fail(ec, "socket for");
  run->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) throw fail(ec, "SO_REUSEADDR on");
  run->acceptor.bind(endpoint, ec);
  if (ec) throw fail(ec, "bind");
  run->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw fail(ec, "listen on");
  impl_->port.store(run->acceptor.local_endpoint().port());
  impl_->accept(*run);
  run->threads.reserve(impl_->options.threads);
  try {
    for (std::size_t i = 0; i < impl_->options.threads; ++i) {
      run->threads.emplace_back([&io = run->io] { Impl::run_loop(io); });
    }
  } catch (...) {
    run->io.stop();
    for (std::thread& thread : run->threads) thread.join();
    throw;
  }
  impl_->run = std::move(run);
  impl_->running.store(true);
}

void LatencyServer::stop() noexcept {
  std::lock_guard lock(impl_->mu);
  if (!impl_->run) return;
  impl_->run->io.stop();
  for (std::thread& thread : impl_->run->threads) thread.join();
  impl_->run.reset();
  impl_->running.store(false);
}

bool LatencyServer::running() const noexcept { return impl_->running.load(); }

std::uint16_t LatencyServer::port() const noexcept { return impl_->port.load(); }

LatencyServerStats LatencyServer::stats() const noexcept { return impl_->counters.snapshot(); }

char LatencyServer::body_byte(std::uint64_t offset) noexcept {
  constexpr std::string_view kHex = "0123456789abcdef";
  const std::uint64_t pos = offset % kLineBytes;
  if (pos >= 16) return kLineTail[pos - 16];
  const std::uint64_t line = offset - pos;
  return kHex[(line >> (4 * (15 - pos))) & 0xf];
}

void LatencyServer::fill_body(std::uint64_t offset, std::span<char> out) noexcept {
  std::size_t i = 0;
  // Byte by byte up to a line boundary, whole lines after it, byte by byte for the tail.
  while (i < out.size() && (offset + i) % kLineBytes != 0) {
    out[i] = body_byte(offset + i);
    ++i;
  }
  constexpr std::string_view kHex = "0123456789abcdef";
  while (out.size() - i >= kLineBytes) {
    const std::uint64_t line = offset + i;
    for (std::size_t d = 0; d < 16; ++d) out[i + d] = kHex[(line >> (4 * (15 - d))) & 0xf];
    std::copy(kLineTail.begin(), kLineTail.end(),
              out.begin() + static_cast<std::ptrdiff_t>(i + 16));
    i += kLineBytes;
  }
  for (; i < out.size(); ++i) out[i] = body_byte(offset + i);
}

std::chrono::milliseconds parse_latency(std::string_view text) {
  const ParsedDuration parsed = parse_milliseconds(text);
  if (parsed.error != DurationError::kNone || parsed.milliseconds > kMaxLatency.count()) {
    throw bad_latency(text);
  }
  return std::chrono::milliseconds(parsed.milliseconds);
}

std::uint64_t parse_byte_size(std::string_view text) {
  const auto bad = [&text] {
    return std::invalid_argument(fmt::format(
        "expected a size such as 5000, 5KB, 50KiB or 20MiB (at most 4GiB), got \"{}\"", text));
  };
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) throw bad();
  const std::string unit = lower(text.substr(digits));
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else if (unit == "kb") {
    scale = 1000;
  } else if (unit == "mb") {
    scale = 1000 * 1000;
  } else if (unit == "gb") {
    scale = 1000 * 1000 * 1000;
  } else if (unit == "kib") {
    scale = std::uint64_t{1} << 10;
  } else if (unit == "mib") {
    scale = std::uint64_t{1} << 20;
  } else if (unit == "gib") {
    scale = std::uint64_t{1} << 30;
  } else {
    throw bad();
  }
  std::uint64_t value = 0;
  std::from_chars(text.data(), text.data() + digits, value);
  if (value > kMaxBodyBytes / scale) throw bad();
  return value * scale;
}

}  // namespace crew
