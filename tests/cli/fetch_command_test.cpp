// crew-test-label: process
// Tests of `crew fetch` as a user runs it: every engine on --local URLs, faults as results with
// exit 1, URL files, usage errors (exit 2, one line), Ctrl-C (exit 130, every URL still reported)
// and the progress line on a terminal. Each test runs the binary named by $CREW_CLI (whose process
// engine forks workers) against a LatencyServer this test starts on 127.0.0.1.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "crew/workloads/fetch.hpp"
#include "support/fetch_support.hpp"
#include "support/leak_guard.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

class FetchCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
    server_.start();
  }

  std::string url(const std::string& path_and_query) const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + path_and_query;
  }

  LatencyServer server_{LatencyServerOptions{.latency = 20ms, .body_bytes = 1000}};
};

// A scratch file, removed with the fixture.
class TempFile {
 public:
  explicit TempFile(const std::string& text)
      : path_(std::filesystem::temp_directory_path() /
              ("crew-fetch-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) +
               ".txt")) {
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST_F(FetchCommandTest, EveryEngineFetchesTheArticlesUrlsFromALocalServer) {
  for (const char* engine : {"serial", "thread", "process", "event-loop"}) {
    const CommandResult r =
        run_crew({"fetch", "--local", "13", "--latency", "10ms", "--body", "5KiB", "--engine",
                  engine, "--workers", engine == std::string("serial") ? "1" : "4", "--json"});
    ASSERT_EQ(r.exit_code, 0) << engine << ": " << r.err;
    const auto document = nlohmann::json::parse(r.out);
    EXPECT_EQ(document["command"], "fetch");
    EXPECT_EQ(document["engine"], engine);
    EXPECT_EQ(document["urls"], 13);
    EXPECT_EQ(document["ok"], 13);
    EXPECT_EQ(document["failed"], 0);
    EXPECT_EQ(document["bytes"], 13 * 5120);
    EXPECT_EQ(document["interrupted"], false);
    EXPECT_EQ(document["local_server"]["latency_ms"], 10);
    EXPECT_GT(document["timing"]["wall_s"].get<double>(), 0.0);
    const auto paths = workloads::article_url_paths();
    ASSERT_EQ(document["results"].size(), 13U);
    for (std::size_t i = 0; i < 13; ++i) {
      const auto& result = document["results"][i];
      EXPECT_THAT(result["url"].get<std::string>(), ::testing::EndsWith(std::string(paths[i])));
      EXPECT_EQ(result["status"], 200);
      EXPECT_EQ(result["bytes"], 5120);
      EXPECT_TRUE(result["error"].is_null());
      EXPECT_EQ(result["attempts"], 1);
      EXPECT_GE(result["seconds"].get<double>(), 0.010);
    }
    if (std::string(engine) == "process") {
      EXPECT_EQ(document["process_stats"]["workers"].size(), 4U);
    }
    if (std::string(engine) == "event-loop") {
      // 13 URLs on 4 slots: keep-alive serves later URLs on the first connections.
      EXPECT_LE(document["event_loop"]["connections_opened"].get<int>(), 4);
      EXPECT_EQ(document["event_loop"]["peak_in_flight"], 4);
    }
  }
}

TEST_F(FetchCommandTest, AFailedUrlIsAResultAndExitsOne) {
  const std::string refused = "http://127.0.0.1:" + std::to_string(closed_port()) + "/";
  const std::string tls = "https://127.0.0.1:" + std::to_string(server_.port()) + "/";
  for (const char* engine : {"serial", "thread", "process", "event-loop"}) {
    const CommandResult r =
        run_crew({"fetch", "--engine", engine, "--json", url("/a"), url("/b?status=404"), refused,
                  url("/c?status=500"), tls, url("/d?reset=1&bytes=100000"), url("/e")});
    EXPECT_EQ(r.exit_code, 1) << engine << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("crew fetch: 5 of 7 URLs failed")) << engine;
    const auto document = nlohmann::json::parse(r.out);
    const auto& results = document["results"];
    ASSERT_EQ(results.size(), 7U);
    EXPECT_TRUE(results[0]["error"].is_null()) << results[0];
    EXPECT_EQ(results[1]["status"], 404);
    EXPECT_EQ(results[1]["error"], "HTTP 404");
    EXPECT_EQ(results[2]["status"], 0);
    EXPECT_THAT(results[2]["error"].get<std::string>(), HasSubstr("onnect")) << results[2];
    EXPECT_EQ(results[3]["status"], 500);
    EXPECT_THAT(results[4]["error"].get<std::string>(), HasSubstr("SSL")) << results[4];
    EXPECT_FALSE(results[5]["error"].is_null()) << results[5];
    EXPECT_TRUE(results[6]["error"].is_null()) << results[6];
    EXPECT_EQ(results[6]["bytes"], 1000);
  }
}

TEST_F(FetchCommandTest, TheTableListsEveryUrlAndTheFailuresSay) {
  const CommandResult r = run_crew({"fetch", url("/ok"), url("/missing?status=404")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, StartsWith("status        bytes  seconds  url\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "   200        1,000 +[0-9.]+  http://127.0.0.1:[0-9]+/ok\n"));
  EXPECT_THAT(r.out, HasSubstr("/missing?status=404  error: HTTP 404\n"));
  EXPECT_THAT(r.out, HasSubstr("2 URLs: 1 ok, 1 failed"));
  EXPECT_THAT(r.out, HasSubstr("Wall time: "));

  const CommandResult failures =
      run_crew({"fetch", "--failures-only", url("/ok"), url("/x?status=503")});
  EXPECT_EQ(failures.exit_code, 1);
  EXPECT_THAT(failures.out, Not(HasSubstr("/ok\n")));
  EXPECT_THAT(failures.out, HasSubstr("error: HTTP 503"));
}

TEST_F(FetchCommandTest, RetriesTransientFailures) {
  const CommandResult r = run_crew({"fetch", "--retries", "2", "--json", url("/x?status=503")});
  EXPECT_EQ(r.exit_code, 1);
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["results"][0]["attempts"], 3);
  EXPECT_EQ(server_.stats().requests, 3U);
}

TEST_F(FetchCommandTest, AStalledBodyEndsAtTheTimeout) {
  const CommandResult r =
      run_crew({"fetch", "--timeout", "300ms", "--json", url("/s?stall=1"), url("/ok")}, 30s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_THAT(document["results"][0]["error"].get<std::string>(),
              HasSubstr("timeout after 300 ms"));
  EXPECT_TRUE(document["results"][1]["error"].is_null());
}

TEST_F(FetchCommandTest, ReadsAUrlsFileWithCommentsAndBlankLines) {
  const TempFile file("# the article's URLs, locally\n\n" + url("/one") + "\n  " + url("/two") +
                      "  \n# done\n");
  const CommandResult r = run_crew({"fetch", "--urls-file", file.path(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  ASSERT_EQ(document["results"].size(), 2U);
  EXPECT_EQ(document["results"][0]["url"], url("/one"));
  EXPECT_EQ(document["results"][1]["url"], url("/two"));
}

TEST_F(FetchCommandTest, BadUsageExitsTwoWithOneLine) {
  const TempFile bad_line(url("/fine") + "\nftp://127.0.0.1/file\n");
  const TempFile only_comments("# nothing\n\n");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"file:///etc/passwd"}, "only http:// and https:// URLs"},
      {{"127.0.0.1/x"}, "not a URL"},
      {{"--engine", "fibers", url("/")}, "--engine must be serial, thread, process or event-loop"},
      {{"--workers", "0", url("/")}, "--workers"},
      {{"--engine", "process", "--workers", "5000", url("/")}, "--workers"},
      {{"--engine", "serial", "--workers", "4", url("/")}, "serial fetches one URL at a time"},
      {{"--timeout", "0", url("/")}, "--timeout must be more than 0 ms"},
      {{"--connect-timeout", "soon", url("/")}, "--connect-timeout must be a duration"},
      {{"--retries", "11", url("/")}, "--retries"},
      {{"--latency", "50ms", url("/")}, "use them with --local N"},
      {{"--local", "5", url("/")}, "either --local or URLs"},
      {{"--local", "0"}, "--local"},
      {{"--local", "3", "--body", "5XB"}, "--latency/--body"},
      {{"--urls-file", "/nonexistent/urls.txt"}, "cannot read --urls-file /nonexistent/urls.txt"},
      {{"--urls-file", bad_line.path()}, "line 2: only http:// and https:// URLs"},
      {{"--urls-file", only_comments.path()}, "no URLs to fetch"},
      {{}, "no URLs to fetch"},  // stdin is /dev/null: read, and empty
      {{"--bogus"}, "--bogus"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {"fetch"};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult r = run_crew(argv, 30s);
    EXPECT_EQ(r.exit_code, 2) << message << "\n" << r.err;
    EXPECT_EQ(r.out, "") << message;
    EXPECT_THAT(r.err, StartsWith("crew: error: ")) << message;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_THAT(r.err, HasSubstr("crew fetch --help")) << message;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(server_.stats().requests, 0U) << "a usage error must fetch nothing";
}

TEST_F(FetchCommandTest, CtrlCStopsStalledTransfersAndReportsEveryUrl) {
  for (const char* engine : {"thread", "process", "event-loop", "serial"}) {
    const std::size_t before = server_.stats().requests;
    ChildProcess child({crew_cli(), "fetch", "--engine", engine, "--timeout", "60s", "--json",
                        url("/1?stall=1"), url("/2?stall=1"), url("/3?stall=1")});
    // Wait until the stalled requests have reached the server, then interrupt.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (server_.stats().requests == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    ASSERT_GT(server_.stats().requests, before) << engine;
    ASSERT_EQ(::kill(child.pid(), SIGINT), 0);
    const CommandResult r = child.wait(30s);
    EXPECT_FALSE(r.timed_out) << engine;
    EXPECT_EQ(r.exit_code, 130) << engine << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("interrupted: 0 of 3 URLs done")) << engine;
    EXPECT_LT(r.wall, 15s) << engine;
    const auto document = nlohmann::json::parse(r.out);
    EXPECT_EQ(document["interrupted"], true);
    ASSERT_EQ(document["results"].size(), 3U);
    for (const auto& result : document["results"]) {
      EXPECT_EQ(result["error"], workloads::kNotFetchedStopped) << engine << result;
    }
  }
}

TEST_F(FetchCommandTest, DrawsProgressOnATerminalOnly) {
  std::vector<std::string> argv = {crew_cli(),  "fetch", "--local",  "8",
                                   "--latency", "200ms", "--engine", "serial"};
  ChildProcess child(argv, {.stderr_is_terminal = true});
  const CommandResult r = child.wait(60s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, ::testing::ContainsRegex("[0-9]+/8 URLs, [0-9.]+/s, ETA"));
  const CommandResult piped =
      run_crew({"fetch", "--local", "8", "--latency", "200ms", "--engine", "serial"});
  EXPECT_EQ(piped.exit_code, 0);
  EXPECT_EQ(piped.err, "");
}

}  // namespace
}  // namespace crew::testing
