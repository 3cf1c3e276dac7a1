#include "crew/latency_server.hpp"

#include "crew/duration.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "server/connection.hpp"
#include "server/idle_connections.hpp"

namespace crew {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

using detail::Connection;
using detail::Socket;

constexpr std::size_t kMaxThreads = 64;
// Out of descriptors with no idle connection to close, accept waits this long before trying
// again: accepting again at once would spin; the client waits in the backlog meanwhile.
constexpr std::chrono::milliseconds kAcceptRetry{50};
// Out of descriptors, accept closes at most this many idle connections at a time (nginx: 32).
constexpr std::size_t kReclaimBatch = 16;
// Only connections idle this long are closed at the descriptor limit: one accepted a moment ago
// is most likely a client whose request is on its way.
constexpr std::chrono::milliseconds kReclaimMinIdle{1000};

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
  // Guards run. start() and stop() hold it throughout, so they never interleave.
  std::mutex mu;
  std::unique_ptr<ServerRun> run;
  std::atomic<bool> running{false};
  std::atomic<std::uint16_t> port{0};

  detail::Counters counters;
  detail::IdleConnections idle;
  // What every connection reads; set before the first start, then only read.
  detail::ConnectionContext context;

  void accept(ServerRun& run_state) {
    run_state.acceptor.async_accept(
        asio::make_strand(run_state.io), [this, &run_state](error_code ec, Socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (ec) {
            on_accept_error(run_state, ec);
            return;
          }
          // Accepting goes on first: a failure below (out of memory) loses this connection, never
          // the accept loop (run_loop carries on past the exception).
          accept(run_state);
          error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          std::make_shared<Connection>(std::move(socket), context)->start();
        });
  }

  // EMFILE and the like: the connections already open go on being served; accepting more needs a
  // descriptor. Connections idle for kReclaimMinIdle (never sent a byte first, then kept-alive
  // ones, then half-closed ones waiting a latency, the oldest first) are closed to make room;
  // with none to close, accept waits kAcceptRetry.
  void on_accept_error(ServerRun& run_state, const error_code& ec) {
    const bool out_of_descriptors = ec == asio::error::no_descriptors || ec.value() == ENFILE ||
                                    ec == asio::error::no_buffer_space ||
                                    ec == asio::error::no_memory;
    if (out_of_descriptors) {
      const auto reclaimed = idle.take_oldest(kReclaimBatch, kReclaimMinIdle);
      for (const auto& connection : reclaimed) connection->close_if_idle();
      if (!reclaimed.empty()) {
        // The closes run on the connections' strands: accept after them, not in a loop.
        asio::post(run_state.io, [this, &run_state] { accept(run_state); });
        return;
      }
    }
    run_state.retry.expires_after(kAcceptRetry);
    run_state.retry.async_wait([this, &run_state](error_code wait_ec) {
      if (!wait_ec) accept(run_state);
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
  for (const auto& [name, timeout] : {std::pair{"header_timeout", options.header_timeout},
                                      std::pair{"keep_alive_timeout", options.keep_alive_timeout},
                                      std::pair{"send_timeout", options.send_timeout}}) {
    if (timeout.count() < 1 || timeout > kMaxLatency) {
      throw std::invalid_argument(
          fmt::format("{} must be between 1 and 3600000 ms, got {} ms", name, timeout.count()));
    }
  }
  impl_->context = {.latency = options.latency,
                    .body_bytes = options.body_bytes,
                    .header_timeout = options.header_timeout,
                    .keep_alive_timeout = options.keep_alive_timeout,
                    .send_timeout = options.send_timeout,
                    .counters = &impl_->counters,
                    .idle = &impl_->idle};
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
