// `crew serve`: crew::LatencyServer as a process — a loopback HTTP/1.1 server that answers every
// request after a latency, for demos and benchmarks whose client must not share its CPU and memory.
#pragma once

#include <CLI/CLI.hpp>
#include <crew/latency_server.hpp>

#include <string>

#include "interrupt.hpp"

namespace crew::cli {

// The command line of `crew serve`, as typed (validated by resolve_serve_args).
struct ServeArgs {
  std::string port = "0";
  std::string latency = "200ms";
  std::string body = "50KiB";
  std::string bind = "127.0.0.1";
  std::string header_timeout = "60s";
  std::string keep_alive_timeout = "75s";
  std::string send_timeout = "60s";
};

// Registers `crew serve` on `app`, writing what it parses into `args` (which must outlive app).
CLI::App* add_serve_command(CLI::App& app, ServeArgs& args);

// Validates the arguments into server options. Throws: UsageError naming the option.
[[nodiscard]] LatencyServerOptions resolve_serve_args(const ServeArgs& args);

// Runs `crew serve`: starts the server, prints "READY <port>" on stdout (flushed), serves until
// `interrupt` reports SIGINT or SIGTERM, stops and returns 0. Throws: UsageError;
// std::system_error when the address cannot be bound or READY cannot be written.
[[nodiscard]] int run_serve_command(const ServeArgs& args, const InterruptWatcher& interrupt);

}  // namespace crew::cli
