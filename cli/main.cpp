// The crew command: parses the command line and hands over to one subcommand. Exit codes: 0 done,
// 1 failure (stdout that could not be written included), 2 usage error, 128 + signal when
// interrupted (130 for Ctrl-C).
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <crew/version.hpp>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "bench_command.hpp"
#include "demo_command.hpp"
#include "fetch_command.hpp"
#include "interrupt.hpp"
#include "option_values.hpp"
#include "primes_command.hpp"
#include "serve_command.hpp"
#include "standard_streams.hpp"

namespace {

using crew::cli::print_diagnostic;
using crew::cli::printable_message;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr std::string_view kCommands[] = {"primes", "fetch", "bench", "demo", "serve"};

constexpr const char* kDescription =
    "crew runs many independent calls of one function on threads or worker processes (and, in\n"
    "later versions, machines), and measures what it cost the way %%time should: wall time, CPU\n"
    "of every thread and worker process, CPU/wall (the parallelism you got) and peak memory. It\n"
    "answers the article \"Python threading vs multiprocessing\" in C++, where threads have no "
    "GIL.";

constexpr const char* kFooter =
    "Examples:\n"
    "  crew demo                                  # the article's two jobs, serial vs pools\n"
    "  crew primes --below 1e7 --engine thread    # sum the primes below 10,000,000\n"
    "  crew primes --below 1e7 --engine process   # the same on worker processes\n"
    "  crew primes --below 1e7 --json             # the same as one JSON object\n"
    "  crew fetch --local 13 --workers 4          # the article's IO job: 13 URLs, 4 threads\n"
    "  crew fetch --urls-file urls.txt --engine event-loop --workers 100\n"
    "  crew bench cpu --plot cpu.png              # every engine x workers: speed-up, verdict\n"
    "  crew bench io --compare-python             # the same for URLs, beside the article's "
    "Python\n"
    "  crew serve --latency 200ms --body 50KiB    # a loopback HTTP server with latency\n"
    "\n"
    "Run 'crew COMMAND --help' for a command's options. Exit codes: 0 done, 1 failure,\n"
    "2 usage error, 130 interrupted (Ctrl-C; a second Ctrl-C exits at once).";

// The command line, for printable_message: what an error message may echo.
std::vector<std::string_view> g_arguments;

// One line on stderr ("crew: error: …", the echoed arguments shortened and escaped), best effort:
// it never throws, so a closed or full stderr cannot turn an error into an abort.
void print_error(std::string_view message, std::string_view suffix = "") noexcept {
  // The library's messages start with "crew: " too; one is enough.
  if (message.starts_with("crew: ")) message.remove_prefix(6);
  try {
    print_diagnostic("crew: error: {}{}\n", printable_message(message, g_arguments), suffix);
  } catch (const std::exception&) {
    // fmt::format_error cannot happen (checked at compile time); bad_alloc: say what we can.
    print_diagnostic(std::string_view("crew: error: (the message could not be formatted)\n"));
  }
}

// One line on stderr, and the exit code of a usage error.
int usage_error(std::string_view message, std::string_view help_command) noexcept {
  try {
    print_error(message, fmt::format(" (run '{} --help' for usage)", help_command));
  } catch (const std::bad_alloc&) {
    print_error(message);
  }
  return kExitUsage;
}

bool is_command(std::string_view word) {
  for (std::string_view command : kCommands) {
    if (word == command) return true;
  }
  return false;
}

int run(int argc, char** argv) {
  CLI::App app(kDescription, "crew");
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("crew ") + CREW_VERSION_STRING,
                       "Print \"crew <version>\" and exit.");
  app.set_help_flag("-h,--help", "Print this help and exit.");
  // At most one; none is reported after parsing, so that `crew --bogus` blames --bogus first.
  app.require_subcommand(0, 1);
  app.get_formatter()->column_width(22);

  crew::cli::PrimesArgs primes_args;
  CLI::App* primes = crew::cli::add_primes_command(app, primes_args);
  crew::cli::FetchArgs fetch_args;
  CLI::App* fetch = crew::cli::add_fetch_command(app, fetch_args);
  crew::cli::BenchArgs bench_args;
  CLI::App* bench = crew::cli::add_bench_command(app, bench_args);
  crew::cli::DemoArgs demo_args;
  CLI::App* demo = crew::cli::add_demo_command(app, demo_args);
  crew::cli::ServeArgs serve_args;
  CLI::App* serve = crew::cli::add_serve_command(app, serve_args);
  for (CLI::App* command : {primes, fetch, bench, demo, serve}) {
    command->set_help_flag("-h,--help", "Print this help and exit.");
    command->get_formatter()->column_width(22);
    crew::cli::refuse_empty_values(*command);
  }

  // The top level takes no values, so its first word that is not an option names the command.
  // CLI11 would call an unknown one "not expected"; say what it is and what exists.
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (word.starts_with('-')) continue;
    if (!is_command(word)) {
      return usage_error(
          fmt::format(
              "unknown command \"{}\": the commands are primes, fetch, bench, demo and serve",
              word),
          "crew");
    }
    break;
  }

  // CLI11 reads "--name=" as "--name" and would take the next argument as the value.
  if (const std::string problem = crew::cli::empty_value_after_equals(
          std::vector<std::string_view>(g_arguments.begin() + 1, g_arguments.end()));
      !problem.empty()) {
    const CLI::App* command = nullptr;
    for (CLI::App* candidate : {primes, fetch, bench, demo, serve}) {
      if (argc > 1 && candidate->get_name() == std::string_view(argv[1])) command = candidate;
    }
    return usage_error(problem, command == nullptr ? "crew" : "crew " + command->get_name());
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    // --help, --version: printed on stdout through std::cout, exit 0. A failed write there
    // leaves its errno for close_stdout's message (nothing else here sets errno).
    errno = 0;
    const int code = app.exit(success);
    if (crew::cli::stdout_failed()) crew::cli::note_stdout_error(errno);
    crew::cli::flush_stdout();
    return code;
  } catch (const CLI::ParseError& error) {
    const char* help = primes->parsed() != 0  ? "crew primes"
                       : fetch->parsed() != 0 ? "crew fetch"
                       : bench->parsed() != 0 ? "crew bench"
                       : demo->parsed() != 0  ? "crew demo"
                       : serve->parsed() != 0 ? "crew serve"
                                              : "crew";
    return usage_error(error.what(), help);
  }
  if (primes->parsed() == 0 && fetch->parsed() == 0 && bench->parsed() == 0 &&
      demo->parsed() == 0 && serve->parsed() == 0) {
    return usage_error("a command is required: primes, fetch, bench, demo or serve", "crew");
  }

  const char* help = primes->parsed() != 0  ? "crew primes"
                     : fetch->parsed() != 0 ? "crew fetch"
                     : bench->parsed() != 0 ? "crew bench"
                     : serve->parsed() != 0 ? "crew serve"
                                            : "crew demo";
  try {
    // Started after parsing, so --help and usage errors start no thread at all.
    crew::cli::InterruptWatcher interrupt;
    if (primes->parsed() != 0) return crew::cli::run_primes_command(primes_args, interrupt);
    if (fetch->parsed() != 0) return crew::cli::run_fetch_command(fetch_args, interrupt);
    if (bench->parsed() != 0) return crew::cli::run_bench_command(bench_args, interrupt);
    if (serve->parsed() != 0) return crew::cli::run_serve_command(serve_args, interrupt);
    return crew::cli::run_demo_command(demo_args, interrupt);
  } catch (const crew::cli::UsageError& error) {
    return usage_error(error.what(), help);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything opens a descriptor: a socket must never become a closed stdout or stderr.
  crew::cli::reserve_standard_descriptors();
  int code = kExitFailure;
  std::error_code stdout_error;
  try {
    g_arguments.assign(argv, argv + argc);
    // Before anything can start a thread: every thread inherits this mask, so SIGINT and SIGTERM
    // reach only the InterruptWatcher's sigwait, never a worker's default action.
    crew::cli::block_interrupt_signals();
    code = run(argc, argv);
  } catch (const std::system_error& error) {
    // fmt::print(stdout, …) throws when stdout fails: close_stdout reports that, once.
    if (crew::cli::stdout_failed()) {
      stdout_error = error.code();
    } else {
      std::fflush(stdout);
      print_error(error.what());
    }
  } catch (const std::exception& error) {
    std::fflush(stdout);
    print_error(error.what());
  }
  // As coreutils' close_stdout: an answer that never reached stdout is a failure.
  return crew::cli::close_stdout(code, stdout_error);
}
