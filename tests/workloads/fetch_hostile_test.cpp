// crew-test-label: process concurrency
// fetch_urls on each engine against hostile loopback peers (support/hostile_http_peer.hpp): a
// proxy from the environment that loopback must bypass, redirects (counted, bounded, across
// hosts), an endless or announced-huge body against max_filesize, a trickling body against the
// low-speed abort, "100 Continue" then silence, and a 302 with an empty Location. Every peer is a
// loopback server the test starts and stops; no request leaves this machine.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "crew/workloads/fetch.hpp"
#include "support/fetch_support.hpp"
#include "support/hostile_http_peer.hpp"

namespace crew::workloads {
namespace {

using namespace std::chrono_literals;
using crew::testing::contains;
using crew::testing::HostilePeer;
using crew::testing::lower;
using crew::testing::wait_until_other_threads_sleep;

// Sets an environment variable for the test's lifetime. Made before anything is fetched (setenv
// is not safe beside a running getenv; the peers' threads read none); each test runs in its own
// process.
class ScopedEnv {
 public:
  // Sets `name` to `value`, or unsets it when `value` is nullopt.
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class FetchHostileTest : public ::testing::TestWithParam<FetchEngine> {
 protected:
  // Fetches `urls` on the engine under test, 4 at a time, bodies kept unless told (an endless
  // body kept would fill memory).
  FetchRun fetch(const std::vector<std::string>& urls, FetchOptions options,
                 bool keep_body = true) {
    options.keep_body = keep_body;
    // Peers' threads settle before the process engine forks (see wait_until_other_threads_sleep).
    wait_until_other_threads_sleep();
    return fetch_urls(urls, GetParam(), 4, options);
  }
};

// Issue 11 item 4: with http_proxy set, every loopback spelling went direct only for the three
// names in a fixed NOPROXY list ("localhost,127.0.0.1,::1"); 127.0.0.2 and ::ffff:127.0.0.1 went
// through the proxy.
TEST_P(FetchHostileTest, LoopbackNeverGoesThroughAProxy) {
  HostilePeer proxy("127.0.0.1");
  const ScopedEnv env("http_proxy", proxy.url(""));
  HostilePeer direct("127.0.0.1");
  HostilePeer other("127.0.0.2");
  const std::string port = std::to_string(direct.port());
  std::vector<std::string> urls = {
      direct.url("/a"),
      other.url("/b"),
      "http://[::ffff:127.0.0.1]:" + port + "/c",
      "http://[::ffff:7f00:1]:" + port + "/c2",
      "http://localhost:" + port + "/d",
      "http://127.1:" + port + "/e",
      "http://LOCALHOST:" + port + "/f",
  };
  const FetchRun run = fetch(urls, {});
  ASSERT_EQ(run.results.size(), urls.size());
  for (const FetchResult& result : run.results) {
    EXPECT_TRUE(result.ok()) << result.url << ": " << result.error;
    EXPECT_TRUE(contains(result.body, "peer 127.0.0.")) << result.url << ": " << result.body;
  }
  EXPECT_EQ(run.results[1].body, "peer 127.0.0.2");
  EXPECT_EQ(proxy.request_lines(), std::vector<std::string>{}) << "a loopback URL used the proxy";
}

// A redirect to a loopback spelling that the first URL did not use went through the proxy: the
// exceptions named only the first URL's host, and curl 7.88 matches ::ffff:127.x.x.x only by its
// exact spelling, on every hop.
TEST_P(FetchHostileTest, ARedirectToLoopbackNeverGoesThroughAProxy) {
  HostilePeer proxy("127.0.0.1");
  const ScopedEnv env("http_proxy", proxy.url(""));
  HostilePeer direct("127.0.0.1");
  HostilePeer other("127.0.0.2");
  const std::string port = std::to_string(direct.port());
  const std::string mapped = "http://[::ffff:127.0.0.1]:" + port + "/mapped";
  const std::string mapped_other =
      "http://[::ffff:127.0.0.2]:" + std::to_string(other.port()) + "/mapped-other";
  std::vector<std::string> urls = {
      direct.url("/redirect-to?" + mapped),
      other.url("/redirect-to?" + direct.url("/redirect-to?" + mapped_other)),
      direct.url("/redirect-to?//[::ffff:7f00:1]:" + port + "/scheme-relative"),
  };
  const FetchRun run = fetch(urls, {});
  ASSERT_EQ(run.results.size(), urls.size());
  for (const FetchResult& result : run.results) {
    EXPECT_TRUE(result.ok()) << result.url << ": " << result.error;
    EXPECT_GE(result.redirects, 1) << result.url;
    EXPECT_TRUE(contains(result.body, "peer 127.0.0.")) << result.url << ": " << result.body;
  }
  EXPECT_EQ(run.results[1].body, "peer 127.0.0.2");
  EXPECT_EQ(proxy.request_lines(), std::vector<std::string>{}) << "a redirect used the proxy";
}

// The proxy from the environment is still used for other hosts (so the fix did not just turn
// proxies off). The proxy is a loopback peer: nothing leaves the machine, no name is resolved.
TEST_P(FetchHostileTest, OtherHostsStillGoThroughTheProxy) {
  HostilePeer proxy("127.0.0.1");
  const ScopedEnv env("http_proxy", proxy.url(""));
  // Whatever the machine running the tests says (NO_PROXY=* would send the URL direct).
  const ScopedEnv no_proxy("no_proxy", std::nullopt);
  const ScopedEnv no_proxy_upper("NO_PROXY", std::nullopt);
  const FetchRun run = fetch({"http://crew-test.invalid/x"}, {});
  ASSERT_EQ(run.results.size(), 1U);
  EXPECT_TRUE(run.results[0].ok()) << run.results[0].error;
  EXPECT_EQ(run.results[0].body, "peer 127.0.0.1");
  EXPECT_EQ(proxy.request_lines(),
            std::vector<std::string>{"GET http://crew-test.invalid/x HTTP/1.1"});
}

// Issue 11 item 5: a redirect left no trace; each result now says where it ended and how many
// redirects led there.
TEST_P(FetchHostileTest, ResultsSayWhereRedirectsLed) {
  HostilePeer first("127.0.0.1");
  HostilePeer second("127.0.0.2");
  const std::vector<std::string> urls = {
      first.url("/redirect/3"),
      first.url("/redirect-to?" + second.url("/elsewhere")),
      first.url("/plain"),
  };
  const FetchRun run = fetch(urls, {});
  ASSERT_EQ(run.results.size(), 3U);
  const auto& r = run.results;
  EXPECT_TRUE(r[0].ok()) << r[0].error;
  EXPECT_EQ(r[0].redirects, 3);
  EXPECT_EQ(r[0].effective_url, first.url("/redirect/0"));
  EXPECT_EQ(r[0].status, 200);
  EXPECT_TRUE(r[1].ok()) << r[1].error;
  EXPECT_EQ(r[1].redirects, 1);
  EXPECT_EQ(r[1].effective_url, second.url("/elsewhere"));
  EXPECT_EQ(r[1].body, "peer 127.0.0.2");
  EXPECT_EQ(r[2].redirects, 0);
  EXPECT_EQ(r[2].effective_url, urls[2]);
}

TEST_P(FetchHostileTest, MaxRedirectsBoundsAndZeroDoesNotFollow) {
  HostilePeer peer("127.0.0.1");
  const std::vector<std::string> urls = {peer.url("/redirect/3")};
  FetchOptions options;
  options.max_redirects = 2;
  const FetchRun bounded = fetch(urls, options);
  ASSERT_EQ(bounded.results.size(), 1U);
  EXPECT_FALSE(bounded.results[0].ok());
  EXPECT_TRUE(contains(lower(bounded.results[0].error), "redirect")) << bounded.results[0].error;
  EXPECT_EQ(bounded.results[0].redirects, 2);

  options.max_redirects = 0;
  const FetchRun unfollowed = fetch(urls, options);
  ASSERT_EQ(unfollowed.results.size(), 1U);
  EXPECT_TRUE(unfollowed.results[0].ok()) << unfollowed.results[0].error;
  EXPECT_EQ(unfollowed.results[0].status, 302);
  EXPECT_EQ(unfollowed.results[0].redirects, 0);
  EXPECT_EQ(unfollowed.results[0].effective_url, urls[0]);
}

// Issue 11 item 6: an endless body was read until the timeout.
TEST_P(FetchHostileTest, MaxFilesizeEndsAnEndlessOrHugeBody) {
  HostilePeer peer("127.0.0.1");
  const std::vector<std::string> urls = {peer.url("/endless"), peer.url("/huge-length"),
                                         peer.url("/small")};
  FetchOptions options;
  options.max_filesize = 1 << 20;
  options.timeout = 5s;  // far beyond the limit's effect: the limit, not the timeout, ends them
  const FetchRun run = fetch(urls, options, /*keep_body=*/false);
  ASSERT_EQ(run.results.size(), 3U);
  for (const FetchResult& result : {run.results[0], run.results[1]}) {
    EXPECT_FALSE(result.ok()) << result.url;
    EXPECT_TRUE(contains(result.error, "maximum file size of 1048576 bytes")) << result.error;
    EXPECT_EQ(result.attempts, 1) << "a too-large body is not worth a retry";
    EXPECT_LE(result.bytes, 1U << 20) << result.url;
  }
  EXPECT_TRUE(run.results[2].ok()) << run.results[2].error;
  // The announced length is the one the response gave (curl's getinfo says -1 once it refused the
  // head, and the message said "announced -1 bytes").
  EXPECT_TRUE(contains(run.results[1].error, "announced 5368709120 bytes")) << run.results[1].error;
}

TEST_P(FetchHostileTest, LowSpeedAbortEndsATricklingBody) {
  HostilePeer peer("127.0.0.1");
  FetchOptions options;
  options.low_speed_limit = 1000;  // the peer sends 100 bytes/s
  options.low_speed_time = 1s;
  options.timeout = 5s;
  const FetchRun run = fetch({peer.url("/trickle")}, options, /*keep_body=*/false);
  ASSERT_EQ(run.results.size(), 1U);
  const FetchResult& result = run.results[0];
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(contains(result.error, "too slow: under 1000 bytes/s for 1 s")) << result.error;
  EXPECT_FALSE(contains(result.error, "timeout after")) << result.error;
  EXPECT_EQ(result.status, 200);
}

// Issue 11 item 7: "100 Continue" then silence was reported as status 100.
TEST_P(FetchHostileTest, AnInterimResponseIsNeverTheStatus) {
  HostilePeer peer("127.0.0.1");
  FetchOptions options;
  options.timeout = 1s;
  const FetchRun run = fetch({peer.url("/continue-then-silence")}, options);
  ASSERT_EQ(run.results.size(), 1U);
  EXPECT_FALSE(run.results[0].ok());
  EXPECT_EQ(run.results[0].status, 0) << run.results[0].error;
  EXPECT_TRUE(contains(run.results[0].error, "timeout")) << run.results[0].error;
}

// The same class: an unasked-for "101 Switching Protocols" is interim too, never a status.
TEST_P(FetchHostileTest, AnUnaskedForSwitchIsNeverTheStatus) {
  HostilePeer peer("127.0.0.1");
  FetchOptions options;
  options.timeout = 5s;
  const FetchRun run = fetch({peer.url("/switching-protocols")}, options);
  ASSERT_EQ(run.results.size(), 1U);
  EXPECT_FALSE(run.results[0].ok());
  EXPECT_EQ(run.results[0].status, 0) << run.results[0].error;
}

// Issue 11 item 7: a 302 with an empty Location counted as ok; so did one with blanks only, or
// none at all.
TEST_P(FetchHostileTest, ARedirectWithNowhereToGoFails) {
  HostilePeer peer("127.0.0.1");
  const FetchRun run = fetch(
      {peer.url("/empty-location"), peer.url("/blank-location"), peer.url("/no-location")}, {});
  ASSERT_EQ(run.results.size(), 3U);
  for (const FetchResult& result : run.results) {
    EXPECT_FALSE(result.ok()) << result.url;
    EXPECT_EQ(result.status, 302) << result.url;
    EXPECT_TRUE(contains(result.error, "HTTP 302 redirect with no Location")) << result.error;
    EXPECT_EQ(result.attempts, 1) << result.url;
  }
}

// With no descriptor left for a socket, curl says "Couldn't connect to server: Failed to connect to
// 127.0.0.1 port P after 0 ms": the server is blamed for this process's open-file limit.
TEST(FetchDescriptorsTest, NoDescriptorForASocketIsNamedAsSuch) {
  HostilePeer peer("127.0.0.1");
  Fetcher fetcher;  // its handles (and their wake-up sockets) exist before the descriptors run out
  // The soft limit just above the highest descriptor open now, then every free one below it taken.
  int highest = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(entry.path().filename().string()));
  }
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = std::min<rlim_t>(old.rlim_cur, static_cast<rlim_t>(highest) + 16);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> held;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) held.push_back(fd);
  const FetchResult result = fetcher.fetch(peer.url("/ok"));
  for (const int fd : held) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(contains(result.error, "Too many open files")) << result.error;
  EXPECT_TRUE(contains(result.error, "RLIMIT_NOFILE")) << result.error;
  EXPECT_FALSE(contains(result.error, "Failed to connect")) << result.error;
}

INSTANTIATE_TEST_SUITE_P(Engines, FetchHostileTest,
                         ::testing::Values(FetchEngine::kSerial, FetchEngine::kThread,
                                           FetchEngine::kProcess, FetchEngine::kEventLoop),
                         [](const ::testing::TestParamInfo<FetchEngine>& info) {
                           std::string name(fetch_engine_name(info.param));
                           return name == "event-loop"
                                      ? std::string("EventLoop")
                                      : std::string(1, static_cast<char>(name[0] - 'a' + 'A')) +
                                            name.substr(1);
                         });

}  // namespace
}  // namespace crew::workloads
