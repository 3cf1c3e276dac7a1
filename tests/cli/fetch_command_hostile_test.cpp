// crew-test-label: process
// `crew fetch` as a user runs it against hostile loopback peers (support/hostile_http_peer.hpp)
// and hostile input: a proxy in the environment, redirects (--max-redirs, where each URL ended),
// endless and trickling bodies (--max-filesize, --speed-limit/--speed-time), URL files with a
// byte-order mark or a line without end, and the summary of a run cut short by Ctrl-C. Every peer
// is a loopback server this test starts and stops.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "crew/latency_server.hpp"
#include "support/hostile_http_peer.hpp"
#include "support/run_command.hpp"

namespace crew::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// A scratch file, removed at the end of the test.
class ScratchFile {
 public:
  ScratchFile()
      : path_(std::filesystem::temp_directory_path() /
              ("crew-fetch-hostile-" + std::to_string(::getpid()) + "-" +
               std::to_string(counter_++) + ".txt")) {}
  explicit ScratchFile(const std::string& text) : ScratchFile() { std::ofstream(path_) << text; }
  ~ScratchFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

class FetchCommandHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(crew_cli().empty()) << "CREW_CLI must name the crew binary (ctest sets it)";
  }
  HostilePeer peer_{"127.0.0.1"};
};

// Issue 11 item 4, as a user meets it: http_proxy in the environment, loopback URLs.
TEST_F(FetchCommandHostileTest, LoopbackUrlsBypassTheProxyFromTheEnvironment) {
  HostilePeer proxy("127.0.0.1");
  HostilePeer other("127.0.0.2");
  ChildProcess child({crew_cli(), "fetch", "--json", other.url("/b"),
                      "http://[::ffff:127.0.0.1]:" + std::to_string(peer_.port()) + "/c"},
                     {.env = {"http_proxy=" + proxy.url(""), "HTTP_PROXY=" + proxy.url("")}});
  const CommandResult r = child.wait(60s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(proxy.request_lines(), std::vector<std::string>{});
  EXPECT_EQ(other.request_lines().size(), 1U);
  EXPECT_EQ(peer_.request_lines().size(), 1U);
}

// Issue 11 item 5: where each URL ended, in JSON and in the table; --max-redirs like curl's.
TEST_F(FetchCommandHostileTest, EachResultSaysWhereRedirectsLed) {
  const std::string start = peer_.url("/redirect/2");
  const CommandResult json = run_crew({"fetch", "--json", start, peer_.url("/plain")});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto document = nlohmann::json::parse(json.out);
  EXPECT_EQ(document["max_redirects"], 10);
  const auto& first = document["results"][0];
  EXPECT_EQ(first["url"], start);
  EXPECT_EQ(first["effective_url"], peer_.url("/redirect/0"));
  EXPECT_EQ(first["redirects"], 2);
  EXPECT_EQ(document["results"][1]["effective_url"], peer_.url("/plain"));
  EXPECT_EQ(document["results"][1]["redirects"], 0);

  const CommandResult text = run_crew({"fetch", start, peer_.url("/plain")});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr(start + "  -> " + peer_.url("/redirect/0") + " (2 redirects)"));
  EXPECT_THAT(text.out, Not(HasSubstr(peer_.url("/plain") + "  ->")));
}

TEST_F(FetchCommandHostileTest, MaxRedirsBoundsAndZeroDoesNotFollow) {
  const std::string start = peer_.url("/redirect/2");
  const CommandResult bounded = run_crew({"fetch", "--json", "--max-redirs", "1", start});
  EXPECT_EQ(bounded.exit_code, 1) << bounded.err;
  const auto failed = nlohmann::json::parse(bounded.out)["results"][0];
  EXPECT_THAT(failed["error"].get<std::string>(), HasSubstr("redirects"));

  const CommandResult unfollowed = run_crew({"fetch", "--json", "--max-redirs", "0", start});
  EXPECT_EQ(unfollowed.exit_code, 0) << unfollowed.err;
  const auto result = nlohmann::json::parse(unfollowed.out)["results"][0];
  EXPECT_EQ(result["status"], 302);
  EXPECT_EQ(result["redirects"], 0);
}

// Issue 11 item 6: an endless body ends at --max-filesize, a trickle at the low-speed abort, each
// with its own error; the timeout (60 s) is far off.
TEST_F(FetchCommandHostileTest, MaxFilesizeAndSpeedLimitEndHostileBodies) {
  const CommandResult r =
      run_crew({"fetch", "--json", "--timeout", "60s", "--max-filesize", "1MiB", "--speed-limit",
                "1000", "--speed-time", "1", peer_.url("/endless"), peer_.url("/trickle")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  EXPECT_EQ(document["max_filesize"], 1 << 20);
  EXPECT_EQ(document["speed_limit"], 1000);
  EXPECT_EQ(document["speed_time_s"], 1);
  const auto& results = document["results"];
  EXPECT_THAT(results[0]["error"].get<std::string>(),
              HasSubstr("too large: the body passed the maximum file size of 1048576 bytes"));
  EXPECT_LE(results[0]["bytes"].get<std::uint64_t>(), 1U << 20);
  EXPECT_THAT(results[1]["error"].get<std::string>(),
              HasSubstr("too slow: under 1000 bytes/s for 1 s"));
}

TEST_F(FetchCommandHostileTest, NewOptionsRefuseBadValuesWithUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--max-redirs", "51"}, "--max-redirs"},       {{"--max-redirs", "-1"}, "--max-redirs"},
      {{"--max-filesize", "lots"}, "--max-filesize"}, {{"--speed-limit", "fast"}, "--speed-limit"},
      {{"--speed-time", "0"}, "--speed-time"},        {{"--speed-time", "3601"}, "--speed-time"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {"fetch"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(peer_.url("/"));
    const CommandResult r = run_crew(argv, 30s);
    EXPECT_EQ(r.exit_code, 2) << message << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(message));
  }
  EXPECT_EQ(peer_.request_lines().size(), 0U) << "a usage error must fetch nothing";
}

// Issue 11 item 7: a URL file saved with a UTF-8 byte-order mark (Windows editors do) is read.
TEST_F(FetchCommandHostileTest, AUrlFileWithAByteOrderMarkIsRead) {
  const ScratchFile file("\xEF\xBB\xBF" + peer_.url("/one") + "\r\n" + peer_.url("/two") + "\r\n");
  const CommandResult r = run_crew({"fetch", "--json", "--urls-file", file.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto document = nlohmann::json::parse(r.out);
  ASSERT_EQ(document["results"].size(), 2U);
  EXPECT_EQ(document["results"][0]["url"], peer_.url("/one"));
}

// Issue 11 item 11: a URL file whose line never ends was read whole into memory (5.2 GB for a
// 1 GB file). Lines are bounded: past the bound is a usage error, and reading stops there. The
// file is sparse (64 MiB of zeros, no newline), so it costs no disk.
TEST_F(FetchCommandHostileTest, AnEndlessLineInAUrlFileIsAUsageError) {
  const ScratchFile file;
  { std::ofstream(file.path()) << "http://127.0.0.1/"; }
  std::filesystem::resize_file(file.path(), 64 << 20);
  const CommandResult r = run_crew({"fetch", "--urls-file", file.path()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("line 1 is longer than 65,536 bytes"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// A line of exactly 65,536 bytes is within the bound whatever ends it: with "\r\n" (a file saved
// on Windows) it was refused as "longer than 65,536 bytes", the CR counted as part of the line.
TEST_F(FetchCommandHostileTest, ALineExactlyAtTheBoundIsReadWithEitherLineEnd) {
  std::string line = peer_.url("/bound?");
  line.resize(65'536, 'a');
  for (const std::string& end : {std::string("\n"), std::string("\r\n"), std::string()}) {
    const ScratchFile file(line + end);
    const CommandResult r = run_crew({"fetch", "--json", "--urls-file", file.path()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto document = nlohmann::json::parse(r.out);
    ASSERT_EQ(document["results"].size(), 1U);
    EXPECT_EQ(document["results"][0]["url"], line);
  }
  const ScratchFile over(line + "a\r\n");
  const CommandResult r = run_crew({"fetch", "--urls-file", over.path()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("line 1 is longer than 65,536 bytes"));
}

// Short lines were unbounded in number: 3 GB of "http://127.0.0.1:P/x" on stdin took 23 GB and
// the OOM killer ended it. One run takes at most 1,000,000 URLs (as --local); one more is a usage
// error, found while reading.
TEST_F(FetchCommandHostileTest, MoreUrlsThanOneRunTakesIsAUsageError) {
  std::string text;
  for (int i = 0; i < 1'000'001; ++i) text += "http://127.0.0.1:9/\n";
  const ScratchFile file(text);
  const CommandResult r =
      run_crew({"fetch", "--connect-timeout", "1ms", "--urls-file", file.path()});
  EXPECT_EQ(r.exit_code, 2) << r.err.substr(0, 300);
  EXPECT_THAT(r.err, HasSubstr("line 1000001: more than 1,000,000 URLs in one run"));
  EXPECT_TRUE(r.out.empty()) << r.out.substr(0, 300);
}

// Issue 11 item 8: after Ctrl-C the summary's rate counted URLs never fetched. 3 URLs are answered
// at once and 2 stall; the rate must be the 3 done over the wall time, not all 5.
TEST_F(FetchCommandHostileTest, AfterCtrlCTheRateCountsOnlyUrlsFetched) {
  LatencyServer server(LatencyServerOptions{.latency = 1ms, .body_bytes = 10});
  server.start();
  const auto url = [&server](const std::string& target) {
    return "http://127.0.0.1:" + std::to_string(server.port()) + target;
  };
  ChildProcess child({crew_cli(), "fetch", "--workers", "5", "--timeout", "60s", url("/1"),
                      url("/2"), url("/3"), url("/4?stall=1"), url("/5?stall=1")});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    const LatencyServerStats stats = server.stats();
    if (stats.requests == 5 && stats.in_flight == 2) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(server.stats().requests, 5U);
  // The 3 answers are in the client's socket buffers once the server counts them answered; the
  // client may still be reading them, so the count of done URLs comes from its own report.
  ASSERT_EQ(::kill(child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(30s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  std::smatch done_match;
  ASSERT_TRUE(std::regex_search(r.err, done_match, std::regex("interrupted: (\\d+) of 5 URLs")))
      << r.err;
  const double done = std::stod(done_match[1]);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      r.out, match, std::regex("5 URLs \\((\\d+) fetched\\): .* \\(([0-9.]+) URLs/s\\)")))
      << r.out;
  EXPECT_EQ(std::stod(match[1]), done);
  const double rate = std::stod(match[2]);
  // The wall time with 3 significant digits (the summary's has 2 decimals: too coarse for a run
  // of a few ms).
  std::smatch wall_match;
  ASSERT_TRUE(
      std::regex_search(r.out, wall_match, std::regex("Wall time: ([0-9.]+) (ns|µs|ms|s)\n")))
      << r.out;
  const std::string unit = wall_match[2];
  const double scale = unit == "s" ? 1 : unit == "ms" ? 1e-3 : unit == "ns" ? 1e-9 : 1e-6;
  const double wall = std::stod(wall_match[1]) * scale;
  // rate × wall is `done` (to rounding), where counting every URL would give 5.
  EXPECT_LT(std::abs(rate * wall - done), std::abs(rate * wall - 5.0)) << r.out;
  // The stopped URLs are neither failures nor bytes fetched: the summary said "0 ok, 5 failed"
  // for URLs never fetched, and counted the stalled bodies' first bytes with the fetched ones.
  std::smatch counts;
  ASSERT_TRUE(std::regex_search(
      r.out, counts, std::regex("(\\d+) ok, (\\d+) failed, (\\d+) not fetched; (\\d+) B in")))
      << r.out;
  EXPECT_EQ(std::stod(counts[1]), done) << r.out;
  EXPECT_EQ(counts[2], "0") << r.out;
  EXPECT_EQ(std::stod(counts[3]), 5 - done) << r.out;
  EXPECT_EQ(std::stod(counts[4]), done * 10) << r.out;  // 10-byte bodies
  EXPECT_NEAR(rate * wall, done, 0.1 * done + 0.1) << r.out;
}

// Ctrl-C while the URL list waits for its writer (a FIFO, a pipe, a terminal) stops crew: it was
// ignored until the input ended (the read blocked; only a second Ctrl-C ended crew).
TEST_F(FetchCommandHostileTest, CtrlCWhileTheUrlListWaitsForItsWriterStops) {
  ScratchFile fifo;
  ASSERT_EQ(::mkfifo(fifo.path().c_str(), 0600), 0);
  ChildProcess child({crew_cli(), "fetch", "--urls-file", fifo.path()});
  // The writer's end is opened once crew has opened its end (ENXIO until then), and stays open,
  // silent, so that crew's read waits.
  int writer = -1;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (writer < 0 && std::chrono::steady_clock::now() < deadline) {
    writer = ::open(fifo.path().c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (writer < 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(writer, 0) << "crew never opened the FIFO";
  ASSERT_EQ(::write(writer, "http://127.0.0.1:1/\n", 20), 20);  // a first line, then silence
  ASSERT_EQ(::kill(child.pid(), SIGINT), 0);
  const CommandResult r = child.wait(20s);
  ::close(writer);
  EXPECT_FALSE(r.timed_out) << "a Ctrl-C did not stop crew fetch reading its URL list";
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted while reading the URLs")) << r.err;
}

}  // namespace
}  // namespace crew::testing
