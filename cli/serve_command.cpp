#include "serve_command.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string_view>
#include <system_error>

#include "crew/workloads/primes.hpp"
#include "primes_command.hpp"  // UsageError
#include "standard_streams.hpp"

namespace crew::cli {
namespace {

// Each connection is a descriptor; the usual soft limit of 1024 would refuse the 1,000 concurrent
// connections the server is meant to hold, and the hard limit is ours to take. Best effort: on
// failure the server still runs, and accepts again once descriptors free up.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &limit);
}

std::string describe_endpoint(const std::string& address, std::uint16_t port) {
  return address.find(':') != std::string::npos ? fmt::format("[{}]:{}", address, port)
                                                : fmt::format("{}:{}", address, port);
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeArgs& args) {
  CLI::App* command = app.add_subcommand(
      "serve",
      "A loopback HTTP/1.1 server that answers every request after a latency (for crew fetch,\n"
      "demos and benchmarks). Prints \"READY <port>\" once listening; serves until Ctrl-C.");
  command->footer(
      "Any path serves a generated body; the query overrides per request: latency=50ms,\n"
      "bytes=5KiB, status=404, reset=1 (reset mid-body), stall=1 (stop after a few bytes).\n"
      "GET /stats returns the request counts and the peak in flight as JSON.\n"
      "\n"
      "Limits: a request head of at most 16 KiB (a longer request line gets 414, longer\n"
      "header fields 431); no request body. At the open-file limit the server keeps serving\n"
      "its connections and closes idle ones (the oldest that never sent a byte first) to\n"
      "accept new ones.\n"
      "\n"
      "Examples:\n"
      "  crew serve                                   # 127.0.0.1, ephemeral port, 200ms, 50KiB\n"
      "  crew serve --port 8080 --latency 100ms --body 5KiB\n"
      "  crew serve --bind ::1\n"
      "\n"
      "Exit codes: 0 stopped by SIGINT or SIGTERM, 1 failure (e.g. the port is in use),\n"
      "2 usage error. Details in docs/cli.md.");
  command
      ->add_option("--port", args.port,
                   "TCP port to listen on: 0 to 65535; 0 picks a free one, printed in the READY\n"
                   "line. Default: 0.")
      ->type_name("P");
  command
      ->add_option("--latency", args.latency,
                   "How long each request waits before its response: 250ms, 2s, 1.5s, or a\n"
                   "bare number of milliseconds; 0 to 3600s. Default: 200ms.")
      ->type_name("D");
  command
      ->add_option("--body", args.body,
                   "Response body size: 5000, 5KB, 50KiB, 20MiB (at most 4GiB). Default: 50KiB.")
      ->type_name("SIZE");
  command
      ->add_option("--bind", args.bind,
                   "Numeric address to listen on. Default: 127.0.0.1 (loopback only); ::1 for\n"
                   "IPv6 loopback. Any other address is exposed to its network: name it only\n"
                   "when you mean it.")
      ->type_name("ADDR");
  command
      ->add_option("--header-timeout", args.header_timeout,
                   "How long a request head (request line and header fields) may take to\n"
                   "arrive, from its first byte (or from the connect, for a connection's first\n"
                   "request); a slower one gets 408 and the connection is closed. 1ms to 3600s,\n"
                   "as --latency. Default: 60s (nginx's client_header_timeout).")
      ->type_name("D");
  command
      ->add_option("--keep-alive-timeout", args.keep_alive_timeout,
                   "How long a kept-alive connection may sit idle between requests before it is\n"
                   "closed (quietly, no response). 1ms to 3600s. Default: 75s (nginx's\n"
                   "keepalive_timeout).")
      ->type_name("D");
  command
      ->add_option("--send-timeout", args.send_timeout,
                   "How long a response may wait for the client to read it (no progress)\n"
                   "before it is abandoned and the connection closed; stall=1 is exempt. 1ms to\n"
                   "3600s. Default: 60s (nginx's send_timeout).")
      ->type_name("D");
  return command;
}

LatencyServerOptions resolve_serve_args(const ServeArgs& args) {
  LatencyServerOptions options;
  options.port = static_cast<std::uint16_t>(parse_whole_option(args.port, 0, 65535, "--port"));
  try {
    options.latency = parse_latency(args.latency);
  } catch (const std::invalid_argument& error) {
    throw UsageError(fmt::format("--latency: {}", error.what()));
  }
  try {
    options.body_bytes = parse_byte_size(args.body);
  } catch (const std::invalid_argument& error) {
    throw UsageError(fmt::format("--body: {}", error.what()));
  }
  options.bind_address = args.bind;
  const auto timeout = [](const std::string& text, std::string_view option) {
    std::chrono::milliseconds parsed{};
    try {
      parsed = parse_latency(text);
    } catch (const std::invalid_argument& error) {
      throw UsageError(fmt::format("{}: {}", option, error.what()));
    }
    if (parsed.count() == 0) {
      throw UsageError(fmt::format("{}: must be at least 1ms, got \"{}\"", option, text));
    }
    return parsed;
  };
  options.header_timeout = timeout(args.header_timeout, "--header-timeout");
  options.keep_alive_timeout = timeout(args.keep_alive_timeout, "--keep-alive-timeout");
  options.send_timeout = timeout(args.send_timeout, "--send-timeout");
  return options;
}

int run_serve_command(const ServeArgs& args, const InterruptWatcher& interrupt) {
  LatencyServerOptions options = resolve_serve_args(args);
  const std::string address = options.bind_address;
  std::optional<LatencyServer> server;
  try {
    server.emplace(std::move(options));
  } catch (const std::invalid_argument& error) {
    throw UsageError(fmt::format("--bind: {}", error.what()));
  }
  raise_open_file_limit();
  server->start();
  print_diagnostic("crew serve: listening on http://{}/ (latency {}, body {}); Ctrl-C stops it\n",
                   describe_endpoint(address, server->port()), args.latency, args.body);
  fmt::print("READY {}\n", server->port());
  // The one line a caller waits for: if it cannot be written, serving on would leave that caller
  // waiting forever. main reports the failed stdout and exits 1.
  if (std::fflush(stdout) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot write READY to stdout");
  }

  // The watcher thread requests the stop; this thread only sleeps until then.
  std::mutex mu;
  std::condition_variable_any stopped;
  std::unique_lock lock(mu);
  stopped.wait(lock, interrupt.stop_token(), [] { return false; });
  lock.unlock();

  server->stop();
  const LatencyServerStats stats = server->stats();
  print_diagnostic("crew serve: stopped after {} requests ({} at most in flight at once)\n",
                   stats.requests, stats.peak_in_flight);
  return 0;
}

}  // namespace crew::cli
