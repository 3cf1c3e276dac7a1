// `crew serve` as a child process of this crew, for commands that measure a client (crew bench
// io): the server then has its own CPU and memory, and the client's figures are the client's.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace crew::cli {

class ServeChild {
 public:
  // Starts /proc/self/exe serve --port 0 --latency L --body B and waits for its READY line. The
  // child runs in a process group of its own (a terminal's Ctrl-C reaches this process, which
  // stops the child) and gets SIGTERM if this process dies first (PR_SET_PDEATHSIG), so no server
  // outlives a killed crew. Throws: std::runtime_error saying why (fork failed, no READY within 10
  // s — with what the child wrote on stderr).
  ServeChild(std::chrono::milliseconds latency, std::uint64_t body_bytes);
  // SIGTERM, then reaps the child (SIGKILL after 5 s). Throws: nothing.
  ~ServeChild();
  ServeChild(const ServeChild&) = delete;
  ServeChild& operator=(const ServeChild&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  // The child's CPU time so far (user + sys, /proc/<pid>/stat, 10 ms ticks), in seconds.
  [[nodiscard]] double cpu_seconds() const;

 private:
  void stop() noexcept;

  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace crew::cli
