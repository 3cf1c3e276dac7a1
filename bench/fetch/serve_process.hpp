// The fetch benchmarks' server: `crew serve` run as a separate process, so the client's CPU time
// and memory (what the benchmarks measure) are its own, and the server's are not in them.
//
//   crew_bench::ServeProcess server("100ms", "5KiB");  // once per benchmark run, not timed
//   const crew_bench::ServeStats before = server.stats();  // GET /stats, outside the timed region
//
// The binary is the crew CLI built beside crew_bench (CREW_BENCH_CREW_CLI, set by CMake), or the
// path in CREW_BENCH_CREW; loopback only (127.0.0.1, an ephemeral port).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace crew_bench {

// The server's counters (GET /stats), as far as the benchmarks use them.
struct ServeStats {
  std::uint64_t requests = 0;        // requests answered or in flight (not /stats itself)
  std::uint64_t connections = 0;     // connections accepted, the /stats request's own included
  std::uint64_t peak_in_flight = 0;  // the most requests in flight at once since the start
};

// One `crew serve --port 0 --latency L --body B` child. The constructor returns once the server
// printed READY <port>; the destructor sends SIGTERM and reaps it (SIGKILL after 10 s). The child
// also gets SIGTERM if this process dies first (PR_SET_PDEATHSIG), so no server outlives a crashed
// or killed crew_bench. Not copyable, not movable.
class ServeProcess {
 public:
  // Throws: std::runtime_error saying why (binary missing, exited before READY — with its
  // stderr —, no READY within 10 s).
  ServeProcess(std::string_view latency, std::string_view body);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  // The server's CPU time so far (user + sys, from /proc/<pid>/stat: clock-tick resolution,
  // 10 ms), in seconds; 0 when unreadable.
  [[nodiscard]] double cpu_seconds() const;

  // GET /stats on a new connection of its own (counted in `connections`: a delta between two
  // calls includes exactly one, the second call's). Throws: std::runtime_error.
  [[nodiscard]] ServeStats stats() const;

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;  // the READY line's pipe, kept open until the child is reaped
  int stderr_fd_ = -1;  // a memfd holding what the child wrote on stderr
  std::uint16_t port_ = 0;
};

}  // namespace crew_bench
