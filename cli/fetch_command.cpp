#include "fetch_command.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <crew/duration.hpp>
#include <crew/process_pool.hpp>
#include <crew/thread_pool.hpp>
#include <crew/version.hpp>
#include <crew/worker_count.hpp>
#include <crew/workloads/primes.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <utility>

#include "json_output.hpp"
#include "primes_command.hpp"
#include "standard_streams.hpp"
#include "stoppable_input.hpp"

namespace crew::cli {
namespace {

using workloads::FetchEngine;
using workloads::FetchOptions;
using workloads::FetchResult;

// The most URLs --local serves: far beyond any demo, small enough that results fit in memory.
constexpr auto kMaxLocalUrls = static_cast<std::int64_t>(kMaxUrls);
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(1);
constexpr int kMaxRetries = 10;
constexpr int kMaxRedirects = 50;

std::uint64_t parse_size_option(std::string_view text, std::string_view option) {
  try {
    return parse_byte_size(text);
  } catch (const std::invalid_argument& error) {
    throw UsageError(fmt::format("{}: {}", option, error.what()));
  }
}

std::chrono::milliseconds parse_timeout(std::string_view text, std::string_view option) {
  const ParsedDuration parsed = parse_milliseconds(text);
  if (parsed.error == DurationError::kSyntax) {
    throw UsageError(fmt::format(
        "{} must be a duration such as 500ms, 10s or 1.5s (a bare number means milliseconds), "
        "got \"{}\"",
        option, text));
  }
  if (parsed.error == DurationError::kFinerThanMillisecond) {
    throw UsageError(
        fmt::format("{} must be a whole number of milliseconds, got \"{}\"", option, text));
  }
  if (parsed.error == DurationError::kTooLarge || parsed.milliseconds > kMaxTimeout.count()) {
    throw UsageError(fmt::format("{} must be at most 3600s (an hour), got {}", option, text));
  }
  if (parsed.milliseconds <= 0) {
    throw UsageError(fmt::format("{} must be more than 0 ms, got {}", option, text));
  }
  return std::chrono::milliseconds(parsed.milliseconds);
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// Reads the next line of `in` (without its '\n') into `line`. Returns false at the end of the
// input. Throws: UsageError for a line over kMaxUrlLineBytes, having read no more than that of it,
// so a file with no newline costs 64 KiB, not its size.
bool read_bounded_line(std::istream& in, std::string& line, std::string_view source,
                       std::size_t number) {
  line.clear();
  std::streambuf& buffer = *in.rdbuf();
  for (;;) {
    const int c = buffer.sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return !line.empty();
    }
    if (c == '\n') return true;
    if (line.size() == kMaxUrlLineBytes) {
      // A CR that ends the line (a file saved on Windows) is its end, not one byte more of it.
      if (c == '\r') {
        const int next = buffer.sgetc();
        if (next == '\n' || next == std::char_traits<char>::eof()) {
          line.push_back('\r');
          continue;
        }
      }
      throw UsageError(
          fmt::format("{} line {} is longer than {} bytes: a URL file holds one URL a "
                      "line",
                      source, number, group_digits(static_cast<std::int64_t>(kMaxUrlLineBytes))));
    }
    line.push_back(static_cast<char>(c));
  }
}

// One URL a line; blank lines and lines starting with '#' are skipped, and so is a UTF-8
// byte-order mark at the start (editors on Windows write one). `source` names the input in
// messages ("urls.txt", "stdin").
void read_urls(StoppableInputBuffer& input, std::string_view source,
               std::vector<std::string>& urls) {
  std::istream in(&input);
  constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
  std::string line;
  std::size_t number = 0;
  while (read_bounded_line(in, line, source, number + 1)) {
    ++number;
    if (number == 1 && line.starts_with(kByteOrderMark)) line.erase(0, kByteOrderMark.size());
    std::string url = trim(line);
    if (url.empty() || url.starts_with('#')) continue;
    if (const std::string problem = workloads::check_fetch_url(url); !problem.empty()) {
      throw UsageError(fmt::format("{} line {}: {}", source, number, problem));
    }
    if (urls.size() == kMaxUrls) {
      throw UsageError(fmt::format("{} line {}: more than {} URLs in one run; split the list",
                                   source, number,
                                   group_digits(static_cast<std::int64_t>(kMaxUrls))));
    }
    urls.push_back(std::move(url));
  }
  // A read error (a closed stdin, a directory) ends the input as an end of file would.
  if (input.error() != 0) {
    throw UsageError(fmt::format("cannot read {}: {}", source, std::strerror(input.error())));
  }
}

nlohmann::ordered_json result_json(const FetchResult& result) {
  return {
      {"url", result.url},
      {"status", result.status},
      {"effective_url", result.effective_url},
      {"redirects", result.redirects},
      {"bytes", result.bytes},
      {"seconds", result.seconds},
      {"error",
       result.ok() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(result.error)},
      {"attempts", result.attempts},
  };
}

void print_json(const FetchJob& job, const FetchOutcome& outcome, std::uint16_t local_port) {
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const FetchResult& result : outcome.run.results) results.push_back(result_json(result));
  nlohmann::ordered_json local = nullptr;
  if (job.local) {
    local = {{"port", local_port},
             {"latency_ms", job.local->latency.count()},
             {"body_bytes", job.local->body_bytes}};
  }
  nlohmann::ordered_json document = {
      {"command", "fetch"},
      {"crew_version", CREW_VERSION_STRING},
      {"engine", workloads::fetch_engine_name(job.engine)},
      {"workers", job.workers},
      {"workers_reason", job.workers_reason},
      {"connect_timeout_ms", job.options.connect_timeout.count()},
      {"timeout_ms", job.options.timeout.count()},
      {"retries", job.options.retries},
      {"max_redirects", job.options.max_redirects},
      {"max_filesize", job.options.max_filesize == 0
                           ? nlohmann::ordered_json(nullptr)
                           : nlohmann::ordered_json(job.options.max_filesize)},
      {"speed_limit", job.options.low_speed_limit == 0
                          ? nlohmann::ordered_json(nullptr)
                          : nlohmann::ordered_json(job.options.low_speed_limit)},
      {"speed_time_s", job.options.low_speed_limit == 0
                           ? nlohmann::ordered_json(nullptr)
                           : nlohmann::ordered_json(job.options.low_speed_time.count())},
      {"local_server", local},
      {"urls", outcome.run.results.size()},
      {"ok", outcome.ok},
      {"failed", outcome.failed},
      {"not_fetched", outcome.not_fetched},
      {"bytes", outcome.bytes},
      {"interrupted", outcome.interrupted},
      {"timing", timing_to_json(outcome.timing)},
      {"results", std::move(results)},
  };
  if (job.engine == FetchEngine::kEventLoop) {
    document["event_loop"] = {
        {"connections_opened", outcome.run.event_loop.connections_opened},
        {"peak_in_flight", outcome.run.event_loop.peak_in_flight},
    };
  }
  if (outcome.run.process_stats) {
    document["process_stats"] = process_stats_to_json(*outcome.run.process_stats);
  }
  write_stdout(json_line(document));
}

// The table: one row per URL (or per failed URL with --failures-only), then the summary lines.
void print_text(const FetchJob& job, const FetchOutcome& outcome, bool failures_only) {
  std::string out = fmt::format("{:>6} {:>12} {:>8}  {}\n", "status", "bytes", "seconds", "url");
  for (const FetchResult& result : outcome.run.results) {
    if (failures_only && result.ok()) continue;
    const std::string status = result.status == 0 ? "-" : fmt::format("{}", result.status);
    out += fmt::format("{:>6} {:>12} {:>8.3f}  {}", status,
                       group_digits(static_cast<std::int64_t>(result.bytes)), result.seconds,
                       result.url);
    if (result.redirects > 0) {
      out += fmt::format("  -> {} ({} redirect{})", result.effective_url, result.redirects,
                         result.redirects == 1 ? "" : "s");
    }
    if (!result.ok()) out += "  error: " + result.error;
    out += '\n';
  }
  out += describe_fetch_outcome(job, outcome) + "\n";
  out += describe_fetch_job(job) + "\n";
  if (job.engine == FetchEngine::kEventLoop) {
    out += fmt::format("event loop: {} connections opened for {} URLs, at most {} in flight\n",
                       outcome.run.event_loop.connections_opened, outcome.run.results.size(),
                       outcome.run.event_loop.peak_in_flight);
  }
  out += format_timing(outcome.timing);
  write_stdout(out);
}

FetchEngine parse_engine(std::string_view text) {
  if (const auto engine = workloads::parse_fetch_engine(text)) return *engine;
  throw UsageError(
      fmt::format("--engine must be serial, thread, process or event-loop, got \"{}\"", text));
}

}  // namespace

std::pair<std::size_t, std::string> default_fetch_workers() {
  const WorkerCount cpus = default_worker_count();
  const std::size_t workers = std::min<std::size_t>(32, cpus.count + 4);
  return {workers,
          fmt::format("min(32, {} CPUs + 4), Python's ThreadPoolExecutor default", cpus.count)};
}

FetchOutcome run_fetch(const FetchJob& job, std::stop_token stop, ProgressBar& progress) {
  const workloads::FetchControl control{
      .on_progress = [&progress](std::size_t done,
                                 std::size_t total) { progress.update(done, total); },
      .stop = stop,
  };
  FetchOutcome outcome;
  Stopwatch watch;
  outcome.run = workloads::fetch_urls(job.urls, job.engine, job.workers, job.options, control);
  outcome.timing = watch.elapsed();
  progress.finish();
  for (const FetchResult& result : outcome.run.results) {
    // A URL a stop left unfetched is neither a failure nor a body: what it had received counts
    // nowhere.
    if (result.error == workloads::kNotFetchedStopped) {
      ++outcome.not_fetched;
      continue;
    }
    if (result.ok()) {
      ++outcome.ok;
    } else {
      ++outcome.failed;
    }
    outcome.bytes += result.bytes;
  }
  outcome.interrupted = outcome.run.stopped;
  return outcome;
}

std::string describe_fetch_job(const FetchJob& job) {
  std::string text =
      job.engine == FetchEngine::kSerial
          ? fmt::format("engine: serial ({})", job.workers_reason)
          : fmt::format("engine: {}, {}: {} ({})", workloads::fetch_engine_name(job.engine),
                        job.engine == FetchEngine::kEventLoop ? "concurrency" : "workers",
                        job.workers, job.workers_reason);
  text += fmt::format(", connect timeout: {}, timeout: {}, retries: {}, max redirects: {}",
                      format_duration(job.options.connect_timeout),
                      format_duration(job.options.timeout), job.options.retries,
                      job.options.max_redirects);
  if (job.options.max_filesize != 0) {
    text += fmt::format(", max file size: {} bytes",
                        group_digits(static_cast<std::int64_t>(job.options.max_filesize)));
  }
  if (job.options.low_speed_limit != 0) {
    text += fmt::format(", speed limit: {} bytes/s for {} s",
                        group_digits(static_cast<std::int64_t>(job.options.low_speed_limit)),
                        job.options.low_speed_time.count());
  }
  return text;
}

std::string describe_fetch_outcome(const FetchJob& job, const FetchOutcome& outcome) {
  const double wall = std::chrono::duration<double>(outcome.timing.wall).count();
  const std::size_t count = outcome.run.results.size();
  // A stop leaves URLs unfetched: the rate counts only those fetched (with a result of their own).
  const std::size_t fetched = count - outcome.not_fetched;
  std::string text = fmt::format("{} URL{}", count, count == 1 ? "" : "s");
  if (fetched < count) text += fmt::format(" ({} fetched)", fetched);
  text += fmt::format(": {} ok, {} failed", outcome.ok, outcome.failed);
  if (outcome.not_fetched > 0) text += fmt::format(", {} not fetched", outcome.not_fetched);
  text +=
      fmt::format("; {} in {:.2f} s", format_bytes(static_cast<std::int64_t>(outcome.bytes)), wall);
  if (wall > 0) text += fmt::format(" ({:.1f} URLs/s)", static_cast<double>(fetched) / wall);
  if (job.local) {
    text +=
        fmt::format("; local server: {} latency, {} bodies", format_duration(job.local->latency),
                    format_bytes(static_cast<std::int64_t>(job.local->body_bytes)));
  }
  return text;
}

CLI::App* add_fetch_command(CLI::App& app, FetchArgs& args) {
  CLI::App* command = app.add_subcommand(
      "fetch",
      "The article's IO job: fetch URLs over HTTP(S) with libcurl on one engine, one result\n"
      "per URL (status, bytes, seconds, error), timed like %%time.");
  command->footer(
      "Examples:\n"
      "  crew fetch --local 13 --engine serial       # the article's loop, 13 URLs x 200 ms\n"
      "  crew fetch --local 13 --workers 4           # the article's ThreadPoolExecutor(4)\n"
      "  crew fetch --local 2000 --latency 100ms --body 5KiB --engine event-loop --workers 500\n"
      "  crew fetch https://example.org/ https://example.com/ --json\n"
      "  crew fetch --urls-file urls.txt --engine process --timeout 5s --retries 2\n"
      "  crew serve --latency 200ms & crew fetch http://127.0.0.1:PORT/a http://127.0.0.1:PORT/b\n"
      "\n"
      "An HTTP status of 400 or more is a result, counted as failed; so are refused, reset and\n"
      "timed-out connections, TLS and name errors: a failed URL never hides another's result.\n"
      "A body over --max-filesize, a transfer under --speed-limit, a redirect with no Location\n"
      "fail their URL too. Loopback URLs never go through a proxy from the environment.\n"
      "Exit codes: 0 every URL succeeded, 1 some failed, 2 usage error, 130 interrupted (Ctrl-C;\n"
      "a second Ctrl-C exits at once). The JSON fields are described in docs/cli.md.");
  command->add_option("urls", args.urls, "http:// or https:// URLs to fetch.")->type_name("URL");
  command
      ->add_option("--urls-file", args.urls_file,
                   "Read URLs from FILE, one a line; blank lines and lines starting with # are\n"
                   "skipped. '-' reads stdin. With no URL, file or --local, stdin is read when it\n"
                   "is not a terminal.")
      ->type_name("FILE");
  command
      ->add_option(
          "--local", args.local,
          "Start a latency server in this process (crew serve's) and fetch N of its URLs:\n"
          "the article's 13 paths first. Its CPU counts in %%time; for a client-only\n"
          "measurement run `crew serve` separately.")
      ->type_name("N");
  command
      ->add_option("--latency", args.latency,
                   "--local only: the server's wait before each response. Default: 200ms.")
      ->type_name("DURATION");
  command
      ->add_option("--body", args.body, "--local only: each response's body size. Default: 50KiB.")
      ->type_name("SIZE");
  command
      ->add_option("--engine", args.engine,
                   "How the URLs are fetched. Default: thread.\n"
                   "  serial      one at a time: the article's first loop\n"
                   "  thread      crew::ThreadPool, one reused curl handle per worker thread\n"
                   "  process     crew::ProcessPool, one reused curl handle per worker process\n"
                   "  event-loop  one curl multi handle on one thread, WORKERS transfers at once")
      ->type_name("ENGINE");
  command
      ->add_option("--workers", args.workers,
                   "Transfers at once: threads, processes (≤ 1024) or the event loop's\n"
                   "concurrency (≤ 4096). Default: min(32, CPUs + 4), Python's default; lowered\n"
                   "with a warning when the open-file limit cannot hold that many sockets.")
      ->type_name("N");
  command
      ->add_option("--connect-timeout", args.connect_timeout,
                   "Time to connect (TCP, then TLS). Default: 10s.")
      ->type_name("DURATION");
  command
      ->add_option("--timeout", args.timeout,
                   "Time for one whole attempt; a stalled body ends here. Default: 30s.")
      ->type_name("DURATION");
  command
      ->add_option("--retries", args.retries,
                   "Retry transient failures (timeouts, refused or reset connections, HTTP 408,\n"
                   "429, 500, 502, 503, 504) up to N times, waiting 100 ms, 200 ms, 400 ms, ...\n"
                   "Default: 0.")
      ->type_name("N");
  command
      ->add_option("--max-redirs", args.max_redirs,
                   "Follow at most N redirects (http and https only), 0 to 50; one more fails\n"
                   "the URL. 0: follow none, a 3xx is the result. Default: 10.")
      ->type_name("N");
  command
      ->add_option("--max-filesize", args.max_filesize,
                   "Fail a URL whose body is larger than SIZE (5000000, 10MB, 10MiB; at most\n"
                   "4GiB): at once when its length is announced, else when the body passes it.\n"
                   "Default: no limit (0).")
      ->type_name("SIZE");
  command
      ->add_option("--speed-limit", args.speed_limit,
                   "Fail an attempt slower than BYTES per second for --speed-time (curl's\n"
                   "meaning; 1000, 5KiB). Default: off; 1 when only --speed-time is given.")
      ->type_name("BYTES");
  command
      ->add_option("--speed-time", args.speed_time,
                   "Whole seconds (1 to 3600) under --speed-limit before an attempt fails.\n"
                   "Default: off; 30 when only --speed-limit is given.")
      ->type_name("SECONDS");
  command->add_flag("--json", args.json,
                    "Print one JSON object (results and %%time) instead of the table.");
  command->add_flag("--failures-only", args.failures_only,
                    "In the table, list only the URLs that failed (the summary still counts all).");
  return command;
}

FetchJob resolve_fetch_args(const FetchArgs& args, std::stop_token stop) {
  FetchJob job;
  job.engine = parse_engine(args.engine);
  job.options.connect_timeout = parse_timeout(args.connect_timeout, "--connect-timeout");
  job.options.timeout = parse_timeout(args.timeout, "--timeout");
  job.options.retries =
      static_cast<int>(parse_whole_option(args.retries, 0, kMaxRetries, "--retries"));
  job.options.max_redirects =
      static_cast<int>(parse_whole_option(args.max_redirs, 0, kMaxRedirects, "--max-redirs"));
  if (!args.max_filesize.empty()) {
    job.options.max_filesize = parse_size_option(args.max_filesize, "--max-filesize");
  }
  // curl's pairing: either option alone turns the abort on, the other taking curl's default.
  if (!args.speed_limit.empty() || !args.speed_time.empty()) {
    job.options.low_speed_limit =
        args.speed_limit.empty() ? 1 : parse_size_option(args.speed_limit, "--speed-limit");
    if (job.options.low_speed_limit == 0) {
      throw UsageError(
          fmt::format("--speed-limit must be at least 1 byte/s, got \"{}\"", args.speed_limit));
    }
    job.options.low_speed_time = std::chrono::seconds(
        args.speed_time.empty() ? 30
                                : parse_whole_option(args.speed_time, 1, 3600, "--speed-time"));
  }

  const std::size_t max_workers =
      job.engine == FetchEngine::kProcess ? ProcessPool::kMaxWorkers : ThreadPool::kMaxWorkers;
  if (job.engine == FetchEngine::kSerial) {
    if (!args.workers.empty() && args.workers != "1") {
      throw UsageError(
          "--workers is for the thread, process and event-loop engines; serial "
          "fetches one URL at a time");
    }
    job.workers = 1;
    job.workers_reason = "one URL at a time on the calling thread, no pool";
  } else if (args.workers.empty()) {
    std::tie(job.workers, job.workers_reason) = default_fetch_workers();
  } else {
    job.workers = static_cast<std::size_t>(
        parse_whole_option(args.workers, 1, static_cast<std::int64_t>(max_workers), "--workers"));
    job.workers_reason = "--workers";
  }

  const bool has_sources = !args.urls.empty() || !args.urls_file.empty();
  if (!args.local.empty()) {
    if (has_sources) {
      throw UsageError("--local fetches the local server's URLs; give either --local or URLs");
    }
    LocalServerSpec local;
    local.count =
        static_cast<std::size_t>(parse_whole_option(args.local, 1, kMaxLocalUrls, "--local"));
    try {
      local.latency = parse_latency(args.latency);
      local.body_bytes = parse_byte_size(args.body);
    } catch (const std::invalid_argument& error) {
      throw UsageError(fmt::format("--latency/--body: {}", error.what()));
    }
    job.local = local;
  } else {
    // CLI11 keeps the defaults in args; a changed value without --local is a mistake to report.
    if (args.latency != FetchArgs{}.latency || args.body != FetchArgs{}.body) {
      throw UsageError("--latency and --body set the local server: use them with --local N");
    }
    for (const std::string& url : args.urls) {
      if (const std::string problem = workloads::check_fetch_url(url); !problem.empty()) {
        throw UsageError(problem);
      }
      job.urls.push_back(url);
    }
    if (!args.urls_file.empty()) {
      if (args.urls_file == "-") {
        StoppableInputBuffer input(STDIN_FILENO, stop);
        read_urls(input, "stdin", job.urls);
      } else {
        // A directory opens like a file and then reads as empty: say what it is.
        if (std::error_code error; std::filesystem::is_directory(args.urls_file, error)) {
          throw UsageError(
              fmt::format("cannot read --urls-file {}: it is a directory", args.urls_file));
        }
        const int fd = open_stoppable_input(args.urls_file);
        if (fd < 0) {
          throw UsageError(
              fmt::format("cannot read --urls-file {}: {}", args.urls_file, std::strerror(errno)));
        }
        StoppableInputBuffer input(fd, stop, /*owns_fd=*/true);
        read_urls(input, args.urls_file, job.urls);
      }
    } else if (args.urls.empty()) {
      if (isatty(STDIN_FILENO) != 0) {
        throw UsageError(
            "no URLs: give them as arguments, with --urls-file FILE or on stdin, or use --local N");
      }
      StoppableInputBuffer input(STDIN_FILENO, stop);
      read_urls(input, "stdin", job.urls);
    }
    if (job.urls.empty()) {
      throw UsageError("no URLs to fetch (the input had only blank lines and # comments)");
    }
  }

  if (job.engine != FetchEngine::kSerial) {
    const workloads::FdBudget budget =
        workloads::reserve_file_descriptors(job.workers, workloads::fds_per_transfer(job.engine));
    if (!budget.warning.empty()) {
      job.fd_warning = budget.warning;
      job.workers = budget.concurrency;
      job.workers_reason += ", lowered to the open-file limit";
    }
  }
  return job;
}

int run_fetch_command(const FetchArgs& args, const InterruptWatcher& interrupt) {
  FetchJob job;
  try {
    job = resolve_fetch_args(args, interrupt.stop_token());
  } catch (const InputStopped&) {
    print_diagnostic("interrupted while reading the URLs: nothing was fetched\n");
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  if (!job.fd_warning.empty()) print_diagnostic("crew fetch: warning: {}\n", job.fd_warning);

  std::optional<LatencyServer> server;
  if (job.local) {
    server.emplace(
        LatencyServerOptions{.latency = job.local->latency, .body_bytes = job.local->body_bytes});
    server->start();
    job.urls = workloads::local_urls(server->port(), job.local->count);
  }
  ProgressBar progress(!args.json && ProgressBar::stderr_is_terminal(), "URLs");
  const FetchOutcome outcome = run_fetch(job, interrupt.stop_token(), progress);
  const std::uint16_t port = server ? server->port() : 0;
  if (server) server->stop();

  if (args.json) {
    print_json(job, outcome, port);
  } else {
    print_text(job, outcome, args.failures_only);
  }
  if (outcome.interrupted) {
    const std::size_t done = outcome.run.results.size() - outcome.not_fetched;
    print_diagnostic("interrupted: {} of {} URLs done\n", done, outcome.run.results.size());
    return interrupt.exit_code() != 0 ? interrupt.exit_code() : 130;
  }
  if (outcome.failed > 0) {
    print_diagnostic("crew fetch: {} of {} URLs failed\n", outcome.failed,
                     outcome.run.results.size());
    return 1;
  }
  return 0;
}

}  // namespace crew::cli
