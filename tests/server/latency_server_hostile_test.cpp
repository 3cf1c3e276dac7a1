// crew-test-label: concurrency
// A hostile run against crew::LatencyServer (issue 11): while peers misbehave on many connections
// at once — silent sockets, half-sent heads, heads typed a byte at a time, garbage, TLS
// handshakes, oversized heads, bare CRs, pipelined floods that never read, resets mid-head and
// mid-body — a well-behaved client keeps getting correct answers, and afterwards the server has
// closed what it should have (the timeouts are short, so the run is too).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "server/http_client.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using namespace std::chrono_literals;
using server_test::Client;
using server_test::expected_body;
using server_test::Response;
using Clock = std::chrono::steady_clock;

// Runs one misbehaving peer in a loop on its own thread until stopped; a peer that the server
// closes or resets simply starts over (that is the server doing its job), and every socket error
// is expected. Each loop is bounded, so a stuck server cannot keep the test alive past its timeout.
class HostilePeers {
 public:
  explicit HostilePeers(std::uint16_t port) : port_(port) {}
  ~HostilePeers() { stop(); }
  HostilePeers(const HostilePeers&) = delete;
  HostilePeers& operator=(const HostilePeers&) = delete;

  void add(std::function<void(std::uint16_t, const std::atomic<bool>&)> peer) {
    threads_.emplace_back([this, peer = std::move(peer)] {
      for (int round = 0; round < 10'000 && !stopping_.load(); ++round) {
        try {
          peer(port_, stopping_);
        } catch (const std::exception&) {
          // A refused connect, a reset or a broken pipe: the server closed on this peer.
        }
        rounds_.fetch_add(1);
      }
    });
  }

  void stop() {
    stopping_.store(true);
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  std::uint64_t rounds() const { return rounds_.load(); }

 private:
  std::uint16_t port_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> rounds_{0};
  std::vector<std::thread> threads_;
};

// Waits up to `limit` or until `stopping`, in short steps: a peer's pace, not synchronization.
void pause(std::chrono::milliseconds limit, const std::atomic<bool>& stopping) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until && !stopping.load()) std::this_thread::sleep_for(5ms);
}

// The server's thread count: one (the default), and several, where each connection's strand
// keeps its handlers apart.
class LatencyServerHostileTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(LatencyServerHostileTest, AWellBehavedClientIsServedWhilePeersMisbehave) {
  LatencyServer server({.latency = 1ms,
                        .body_bytes = 1000,
                        .threads = GetParam(),
                        .header_timeout = 800ms,
                        .keep_alive_timeout = 800ms,
                        .send_timeout = 800ms});
  server.start();
  const std::uint16_t port = server.port();
  HostilePeers peers(port);

  // Silent sockets, many at once: each gets 408 after header_timeout and is closed.
  for (int i = 0; i < 4; ++i) {
    peers.add([](std::uint16_t p, const std::atomic<bool>& stopping) {
      std::vector<std::unique_ptr<Client>> silent;
      for (int j = 0; j < 25; ++j) silent.push_back(std::make_unique<Client>(p));
      pause(2s, stopping);
    });
  }
  // Half-sent heads that stop, and heads typed so slowly they cannot finish in time.
  peers.add([](std::uint16_t p, const std::atomic<bool>& stopping) {
    Client client(p);
    client.send("GET /?bytes=5 HTTP/1.1\r\nHost: x\r\nUser-Agent: half");
    pause(2s, stopping);
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>& stopping) {
    Client client(p);
    for (const char c : std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) {
      if (stopping.load()) return;
      client.send(std::string(1, c));
      pause(100ms, stopping);
    }
    client.read_response();
  });
  // Garbage, TLS handshakes, bare CRs and oversized heads: refused at once, closed.
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    static thread_local std::mt19937 random(42);
    Client client(p);
    std::string garbage(512, '\0');
    for (char& c : garbage) c = static_cast<char>(random());
    client.send(garbage);
    client.read_response();
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    client.read_response();
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.send("GET / HTTP/1.1\rHost: x\r\r\r\r");
    client.read_response();
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.get("/", "Cookie: " + std::string(40'000, 'c') + "\r\n");
    client.read_response();
  });
  // Pipelined floods: one that reads nothing (the server's writes back up; it must not stall
  // others), one that sends a bad request in the middle of good ones.
  peers.add([](std::uint16_t p, const std::atomic<bool>& stopping) {
    Client client(p);
    std::string flood;
    for (int j = 0; j < 500; ++j) flood += "GET /?bytes=4KiB HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(flood);
    pause(500ms, stopping);
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.send(
        "GET /?bytes=3 HTTP/1.1\r\nHost: x\r\n\r\nGET /?bytes=oops HTTP/1.1\r\nHost: x\r\n\r\n"
        "BAD\x01 /\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int j = 0; j < 4; ++j) client.read_response();
  });
  // Resets: mid-head, and mid-body of a large response.
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.send("GET /?bytes=1KiB HTTP/1.1\r\nHo");
    client.reset();
  });
  peers.add([](std::uint16_t p, const std::atomic<bool>&) {
    Client client(p);
    client.get("/?bytes=8MiB");
    client.set_read_timeout(2s);
    char byte = 0;
    ::recv(client.fd(), &byte, 1, 0);
    client.reset();
  });

  // The well-behaved client: new connections and kept-alive ones, some with a browser-sized
  // Cookie, each answer checked in full. It goes on until the peers have done their worst a few
  // times over (timeouts and refusals counted), not for a fixed time.
  constexpr int kMinRequests = 200;
  constexpr int kMaxRequests = 20'000;
  const std::string cookie = "Cookie: " + std::string(1500, 'c') + "\r\n";
  std::unique_ptr<Client> kept;
  // When `kept` was opened, or its last request went out: the server's header and keep-alive
  // timers (800 ms) start after that. If the test thread was held up for kFreshEnough before the
  // next request was out (a loaded machine), a 408 or a close is the server's right answer, and
  // the request goes again on a new connection, as a browser does; never when it was sent in time.
  Clock::time_point kept_since{};
  constexpr auto kFreshEnough = 150ms;
  int i = 0;
  for (;; ++i) {
    const LatencyServerStats now = server.stats();
    if (i >= kMinRequests && now.timeouts >= 50 && now.bad_requests >= 50 &&
        peers.rounds() >= 100) {
      break;
    }
    ASSERT_LT(i, kMaxRequests) << "the peers never got going: timeouts " << now.timeouts
                               << ", bad requests " << now.bad_requests;
    const std::size_t bytes = 1 + static_cast<std::size_t>(i % 200) * 37;
    const std::string target = "/req" + std::to_string(i) + "?bytes=" + std::to_string(bytes);
    const std::string fields = i % 3 == 0 ? cookie : std::string();
    Response response;
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0 || i % 4 == 0 || !kept) {
        kept_since = Clock::now();
        kept = std::make_unique<Client>(port);
      }
      kept->set_read_timeout(30s);
      bool sent = true;
      try {
        kept->get(target, fields);
      } catch (const std::system_error&) {
        sent = false;  // the server had closed it (EPIPE, ECONNRESET): judged below as a close
      }
      const bool sent_late = Clock::now() - kept_since >= kFreshEnough;
      kept_since = Clock::now();
      response = sent ? kept->read_response() : Response{};
      if (!sent_late || (response.status != 408 && response.status != 0)) break;
    }
    ASSERT_EQ(response.status, 200) << "request " << i << ": " << response.body;
    ASSERT_EQ(response.body, expected_body(0, bytes)) << "request " << i;
  }
  peers.stop();
  EXPECT_GT(peers.rounds(), 0u);

  // The server is not hurt: it still answers, and the silent and slow peers were timed out.
  Client after(port);
  after.get("/?bytes=10");
  EXPECT_EQ(after.read_response().body, expected_body(0, 10));
  const LatencyServerStats stats = server.stats();
  EXPECT_GT(stats.timeouts, 0u);
  EXPECT_GT(stats.bad_requests, 0u);
  EXPECT_GE(stats.requests, static_cast<std::uint64_t>(i));
  // Every hostile socket is closed on the client side now; the server lets go of them within
  // its timeouts (plus its linger), so only the `after` connection remains.
  const auto deadline = Clock::now() + 30s;
  while (server.stats().open_connections > 1) {
    ASSERT_LT(Clock::now(), deadline) << "open: " << server.stats().open_connections;
    std::this_thread::sleep_for(10ms);
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, LatencyServerHostileTest,
                         ::testing::Values(std::size_t{1}, std::size_t{4}),
                         [](const auto& info) { return "Threads" + std::to_string(info.param); });

}  // namespace
}  // namespace crew
