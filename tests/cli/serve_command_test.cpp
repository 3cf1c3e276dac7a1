// Tests of `crew serve` as a user runs it: READY <port>, one request answered, exit 0 on SIGINT
// and SIGTERM, usage errors. Each test runs the binary named by $CREW_CLI in a child process.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "server/http_client.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// Sends one GET over loopback and returns everything the server sent until it closed the
// connection (the request asks it to), or "" when the connection failed.
std::string http_get(std::uint16_t port, const std::string& target) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{.tv_sec = 30, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    const std::string request =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n = 0;
      while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
        reply.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return reply;
}

class ServeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
};

// Starts `crew serve` with `args`, serves one request, sends `signo`, and checks the exit.
void serve_one_request_then_signal(const std::vector<std::string>& args, int signo) {
  std::vector<std::string> argv = {crew_cli(), "serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess child(argv);
  const std::optional<std::string> line = child.read_stdout_line(30s);
  ASSERT_TRUE(line.has_value()) << "crew serve printed no READY line";
  ASSERT_THAT(*line, StartsWith("READY "));
  const int port = std::stoi(line->substr(6));
  ASSERT_GT(port, 0);
  ASSERT_LT(port, 65536);

  const std::string reply = http_get(static_cast<std::uint16_t>(port), "/?bytes=100");
  EXPECT_THAT(reply, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(reply, HasSubstr("Content-Length: 100\r\n"));
  std::string body(100, '\0');
  LatencyServer::fill_body(0, body);
  EXPECT_THAT(reply, ::testing::EndsWith("\r\n\r\n" + body));

  // The command blocked SIGINT and SIGTERM before printing READY, so the signal waits for its
  // watcher thread rather than killing it by default.
  ASSERT_EQ(::kill(child.pid(), signo), 0);
  const CommandResult result = child.wait(30s);
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.term_signal, 0);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "READY " + std::to_string(port) + "\n");
  EXPECT_THAT(result.err, HasSubstr("stopped after 1 requests"));
}

TEST_F(ServeCommandTest, PrintsReadyAnswersAndExitsZeroOnSigint) {
  serve_one_request_then_signal({"--port", "0", "--latency", "50ms", "--body", "1KiB"}, SIGINT);
}

TEST_F(ServeCommandTest, ExitsZeroOnSigterm) {
  serve_one_request_then_signal({"--latency", "0"}, SIGTERM);
}

TEST_F(ServeCommandTest, BadUsageExitsTwoWithOneLine) {
  const std::vector<std::vector<std::string>> cases = {
      {"--latency", "soon"},      {"--body", "5XB"},
      {"--port", "65536"},        {"--port", "-1"},
      {"--bind", "localhost"},    {"--bogus"},
      {"--header-timeout", "0"},  {"--keep-alive-timeout", "soon"},
      {"--header-timeout", "2h"}, {"--send-timeout", "0ms"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> argv = {crew_cli(), "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult result = run_command(argv, 30s);
    EXPECT_EQ(result.exit_code, 2) << args[0];
    EXPECT_EQ(result.out, "") << args[0];
    EXPECT_THAT(result.err, StartsWith("crew: error: ")) << args[0];
    EXPECT_THAT(result.err, HasSubstr("crew serve --help")) << args[0];
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
}

TEST_F(ServeCommandTest, HelpTeachesTheTimeoutsAndLimits) {
  const CommandResult result = run_command({crew_cli(), "serve", "--help"}, 30s);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(result.out, HasSubstr("--header-timeout"));
  EXPECT_THAT(result.out, HasSubstr("Default: 60s"));
  EXPECT_THAT(result.out, HasSubstr("--keep-alive-timeout"));
  EXPECT_THAT(result.out, HasSubstr("Default: 75s"));
  EXPECT_THAT(result.out, HasSubstr("--send-timeout"));
  EXPECT_THAT(result.out, HasSubstr("16 KiB"));
}

TEST_F(ServeCommandTest, PortInUseFailsWithExitOne) {
  LatencyServer server;
  server.start();
  const CommandResult result =
      run_command({crew_cli(), "serve", "--port", std::to_string(server.port())}, 30s);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_THAT(result.err, HasSubstr("crew: error: "));
}

// The ASan build also runs UBSan, whose check of every virtual call probes the object's memory
// through a pipe: with no descriptor left that probe fails and it reports an "invalid vptr" on a
// sound object (boost::system::error_code's category, in crew serve at the limit). The release
// build runs the descriptor-limit tests.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kVptrCheckNeedsDescriptors = true;
#else
constexpr bool kVptrCheckNeedsDescriptors = false;
#endif

// crew serve with 64 descriptors (`ulimit -n` in sh lowers the soft and the hard limit, so it
// cannot raise them: about 50 for connections) and timeouts of an hour, so that only its policy
// at the limit can make room.
constexpr const char* kServeAtSixtyFourDescriptors =
    "ulimit -n 64 && exec \"$0\" serve --latency 0 --body 10 --header-timeout 3600s "
    "--keep-alive-timeout 3600s";

// The port of a crew serve child's READY line, or 0 (with the failure recorded) when none came.
std::uint16_t ready_port(ChildProcess& child) {
  const std::optional<std::string> line = child.read_stdout_line(30s);
  if (!line.has_value() || !line->starts_with("READY ")) {
    ADD_FAILURE() << "no READY line: " << line.value_or(child.wait(30s).err);
    return 0;
  }
  return static_cast<std::uint16_t>(std::stoi(line->substr(6)));
}

TEST_F(ServeCommandTest, AtTheDescriptorLimitIdleConnectionsMakeRoom) {
  if (kVptrCheckNeedsDescriptors) GTEST_SKIP() << "UBSan's vptr check needs free descriptors";
  // Only the server's own policy at the limit (close the oldest connections that never sent a
  // byte) can answer the late client.
  ChildProcess child({"/bin/sh", "-c", kServeAtSixtyFourDescriptors, crew_cli()});
  const std::uint16_t port = ready_port(child);
  ASSERT_NE(port, 0);

  // A client that was there first, with a request waiting its latency through the flood.
  server_test::Client early(port);
  early.get("/?latency=1s&bytes=4");
  std::vector<std::unique_ptr<server_test::Client>> idle;
  for (int i = 0; i < 150; ++i) idle.push_back(std::make_unique<server_test::Client>(port));

  server_test::Client late(port);
  late.set_read_timeout(30s);
  late.get("/?bytes=10");
  const server_test::Response response = late.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, server_test::expected_body(0, 10));

  const server_test::Response early_response = early.read_response();
  EXPECT_EQ(early_response.status, 200);
  EXPECT_EQ(early_response.body, server_test::expected_body(0, 4));

  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  const CommandResult result = child.wait(30s);
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(ServeCommandTest, AtTheDescriptorLimitHalfClosedConnectionsMakeRoom) {
  if (kVptrCheckNeedsDescriptors) GTEST_SKIP() << "UBSan's vptr check needs free descriptors";
  // Clients that send a request with an hour's latency and then half-close (or leave: the server
  // cannot tell) are answered after their latency, so they hold their connections; at the limit
  // the server closes them to accept new ones rather than leave every new client waiting.
  ChildProcess child({"/bin/sh", "-c", kServeAtSixtyFourDescriptors, crew_cli()});
  const std::uint16_t port = ready_port(child);
  ASSERT_NE(port, 0);

  std::vector<std::unique_ptr<server_test::Client>> half_closed;
  for (int i = 0; i < 100; ++i) {
    half_closed.push_back(std::make_unique<server_test::Client>(port));
    half_closed.back()->get("/?latency=3600s");
    half_closed.back()->shutdown_send();
  }
  server_test::Client late(port);
  late.set_read_timeout(30s);
  late.get("/?bytes=10");
  const server_test::Response response = late.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, server_test::expected_body(0, 10));

  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  const CommandResult result = child.wait(30s);
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(ServeCommandTest, AtTheDescriptorLimitWithNothingIdleAcceptWaitsWithoutSpinning) {
  if (kVptrCheckNeedsDescriptors) GTEST_SKIP() << "UBSan's vptr check needs free descriptors";
  ChildProcess child(
      {"/bin/sh", "-c", "ulimit -n 64 && exec \"$0\" serve --latency 0 --body 10", crew_cli()});
  const std::uint16_t port = ready_port(child);
  ASSERT_NE(port, 0);

  // More busy connections than descriptors: each waits its latency, so none can be closed to
  // make room, and the late client waits in the backlog.
  std::vector<std::unique_ptr<server_test::Client>> busy;
  for (int i = 0; i < 80; ++i) {
    busy.push_back(std::make_unique<server_test::Client>(port));
    busy.back()->get("/?latency=3s&bytes=2");
  }
  server_test::Client late(port);
  late.get("/?bytes=10");
  // A spinning accept loop burns a core; one that backs off costs next to no CPU in a second.
  const std::chrono::milliseconds cpu_before = cpu_time(child.pid());
  std::this_thread::sleep_for(1s);
  EXPECT_LT(cpu_time(child.pid()) - cpu_before, 500ms);

  // Once the latencies end, the descriptors come back and the late client is answered too.
  late.set_read_timeout(60s);
  const server_test::Response response = late.read_response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, server_test::expected_body(0, 10));
  for (auto& client : busy) {
    client->set_read_timeout(60s);
    const server_test::Response answer = client->read_response();
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.body, server_test::expected_body(0, 2));
  }

  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  const CommandResult result = child.wait(30s);
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

}  // namespace
}  // namespace crew::testing
