#include "support/fetch_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace crew::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string url(std::uint16_t port, std::string_view target) {
  return "http://127.0.0.1:" + std::to_string(port) + std::string(target);
}

// Waits (up to 2 s) until every other thread of this process sleeps in a system call ('S' in
// /proc/self/task/*/stat). A ProcessPool forks its zygote from this process: under
// AddressSanitizer (GCC 12's runtime) an allocator lock held by another thread at that moment
// stays held in every worker, which then hangs in its first malloc — seen once in ~40 runs of the
// process fetch tests, with the server's thread still starting up when the pool forked.
void wait_until_other_threads_sleep() {
  const std::string self = std::to_string(::gettid());
  const auto deadline = Clock::now() + 2s;
  while (Clock::now() < deadline) {
    bool all_asleep = true;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", error)) {
      if (entry.path().filename() == self) continue;
      std::string text;
      try {
        std::ifstream stat(entry.path() / "stat");
        std::getline(stat, text);
      } catch (const std::ios_base::failure&) {
        continue;
      }
      const std::size_t paren = text.rfind(')');
      if (paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'S') {
        all_asleep = false;
      }
    }
    if (all_asleep) return;
    std::this_thread::sleep_for(1ms);
  }
}

std::unique_ptr<LatencyServer> start_server(LatencyServerOptions options) {
  auto server = std::make_unique<LatencyServer>(std::move(options));
  server->start();
  // Its threads have started: let them settle before a test forks a pool.
  wait_until_other_threads_sleep();
  return server;
}

std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "bind");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string first_error(const std::vector<workloads::FetchResult>& results) {
  const auto failed = std::find_if(results.begin(), results.end(),
                                   [](const workloads::FetchResult& r) { return !r.ok(); });
  return failed == results.end() ? std::string() : failed->url + ": " + failed->error;
}

StopWhenStalled::StopWhenStalled(const LatencyServer& server, std::uint64_t answered,
                                 std::uint64_t in_flight)
    : thread_([this, &server, answered, in_flight] {
        const auto deadline = Clock::now() + 30s;
        while (Clock::now() < deadline && !run_returned_) {
          const LatencyServerStats stats = server.stats();
          if (stats.requests - stats.in_flight >= answered && stats.in_flight >= in_flight) {
            saw_stall_ = true;
            break;
          }
          std::this_thread::sleep_for(2ms);
        }
        if (saw_stall_) std::this_thread::sleep_for(300ms);
        stopped_at_ = Clock::now();
        source_.request_stop();
      }) {}

StopWhenStalled::~StopWhenStalled() {
  run_returned_ = true;
  if (thread_.joinable()) thread_.join();
}

bool StopWhenStalled::saw_stall() {
  run_returned_ = true;
  if (thread_.joinable()) thread_.join();
  return saw_stall_;
}

}  // namespace crew::testing
