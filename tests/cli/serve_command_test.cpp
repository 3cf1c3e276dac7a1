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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
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
      {"--latency", "soon"}, {"--body", "5XB"},       {"--port", "65536"},
      {"--port", "-1"},      {"--bind", "localhost"}, {"--bogus"},
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

TEST_F(ServeCommandTest, PortInUseFailsWithExitOne) {
  LatencyServer server;
  server.start();
  const CommandResult result =
      run_command({crew_cli(), "serve", "--port", std::to_string(server.port())}, 30s);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_THAT(result.err, HasSubstr("crew: error: "));
}

}  // namespace
}  // namespace crew::testing
