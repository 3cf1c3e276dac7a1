// FetchOptions' checks (validate), check_fetch_url and the engine names: what is refused before
// anything is fetched. No test here opens a socket.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "crew/workloads/fetch.hpp"
#include "support/fetch_support.hpp"

namespace crew::workloads {
namespace {

using namespace std::chrono_literals;
using crew::testing::contains;

// The message of the std::invalid_argument that fn throws, or "" when it throws none.
template <class F>
std::string invalid_argument_message(F&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(FetchOptionsTest, ValidateAcceptsDefaultsAndRangeEnds) {
  EXPECT_NO_THROW(validate(FetchOptions{}));
  FetchOptions options;
  options.timeout = 1ms;
  options.connect_timeout = 1ms;
  options.retries = 0;
  EXPECT_NO_THROW(validate(options));
  options.retries = 10;
  options.retry_backoff = 0ms;
  options.max_redirects = 0;
  options.max_filesize = 1;
  options.low_speed_limit = 1;
  options.low_speed_time = 3600s;
  EXPECT_NO_THROW(validate(options));
}

TEST(FetchOptionsTest, ValidateNamesTheFieldOutOfRange) {
  const auto message = [](auto change) {
    FetchOptions options;
    change(options);
    return invalid_argument_message([&] { validate(options); });
  };
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.timeout = 0ms; }), "timeout"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.timeout = -5ms; }), "timeout"));
  EXPECT_TRUE(
      contains(message([](FetchOptions& o) { o.connect_timeout = 0ms; }), "connect_timeout"));
  EXPECT_TRUE(
      contains(message([](FetchOptions& o) { o.connect_timeout = -1ms; }), "connect_timeout"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.retries = -1; }), "retries"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.retries = 11; }), "retries"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.max_redirects = 51; }), "max_redirects"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.low_speed_limit = 10; }), "low_speed"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) { o.low_speed_time = 5s; }), "low_speed"));
  EXPECT_TRUE(contains(message([](FetchOptions& o) {
                         o.low_speed_limit = 1;
                         o.low_speed_time = 3601s;
                       }),
                       "low_speed_time"));
}

TEST(FetchOptionsTest, FetcherAndEventLoopCheckTheirArguments) {
  FetchOptions bad;
  bad.retries = 11;
  EXPECT_THROW(Fetcher{bad}, std::invalid_argument);

  Fetcher fetcher;
  EXPECT_EQ(fetcher.options(), FetchOptions{});
  EXPECT_THROW(fetcher.set_options(bad), std::invalid_argument);
  EXPECT_EQ(fetcher.options(), FetchOptions{}) << "a refused set_options changes nothing";
  FetchOptions good;
  good.retries = 3;
  good.keep_body = true;
  fetcher.set_options(good);
  EXPECT_EQ(fetcher.options(), good);

  const std::vector<std::string> urls = {"http://127.0.0.1:1/"};
  EXPECT_THROW((void)fetch_with_event_loop(urls, 0, FetchOptions{}), std::invalid_argument);
  EXPECT_THROW((void)fetch_with_event_loop(urls, 4, bad), std::invalid_argument);
}

TEST(CheckFetchUrlTest, AcceptsHttpAndHttpsWithAHost) {
  for (const std::string_view good :
       {"http://127.0.0.1/", "https://127.0.0.1:8443/x?y=1", "HTTP://127.0.0.1:80/",
        "HtTpS://127.0.0.1", "http://[::1]:8080/path", "http://localhost/"}) {
    EXPECT_EQ(check_fetch_url(good), "") << good;
  }
}

TEST(CheckFetchUrlTest, RefusesOtherUrlsQuotingThem) {
  for (const std::string_view bad :
       {"file:///etc/passwd", "ftp://127.0.0.1/file", "", "127.0.0.1/x", "http://", "https://",
        "gopher://127.0.0.1/", "httpx://127.0.0.1/"}) {
    const std::string why = check_fetch_url(bad);
    EXPECT_FALSE(why.empty()) << '"' << bad << "\" was accepted";
    if (!bad.empty()) {
      std::string quoted(1, '"');
      quoted.append(bad).push_back('"');
      EXPECT_TRUE(contains(why, quoted)) << why;
    }
  }
}

// A NUL inside a URL (a URL file with binary junk) was accepted: check_fetch_url and curl saw
// the URL up to the NUL only, so crew fetched a URL other than the one given.
TEST(CheckFetchUrlTest, RefusesControlCharactersAnywhere) {
  using namespace std::string_literals;
  for (const std::string& bad : {"http://127.0.0.1/\0junk"s, "http://127.0.0.1/a\x01b"s,
                                 "http://127.0.0.1/\x7f"s, "http://127.0.0.1/a\tb"s}) {
    const std::string why = check_fetch_url(bad);
    EXPECT_TRUE(contains(why, "control character")) << why;
  }
}

TEST(FetchEngineNameTest, NamesRoundTrip) {
  for (const FetchEngine engine : {FetchEngine::kSerial, FetchEngine::kThread,
                                   FetchEngine::kProcess, FetchEngine::kEventLoop}) {
    EXPECT_EQ(parse_fetch_engine(fetch_engine_name(engine)), engine);
  }
  EXPECT_EQ(fetch_engine_name(FetchEngine::kSerial), "serial");
  EXPECT_EQ(fetch_engine_name(FetchEngine::kThread), "thread");
  EXPECT_EQ(fetch_engine_name(FetchEngine::kProcess), "process");
  EXPECT_EQ(fetch_engine_name(FetchEngine::kEventLoop), "event-loop");
  EXPECT_EQ(parse_fetch_engine("event_loop"), FetchEngine::kEventLoop);
  EXPECT_EQ(parse_fetch_engine("eventloop"), FetchEngine::kEventLoop);
  EXPECT_EQ(parse_fetch_engine(""), std::nullopt);
  EXPECT_EQ(parse_fetch_engine("threads "), std::nullopt);
  EXPECT_EQ(parse_fetch_engine("asyncio"), std::nullopt);
}

}  // namespace
}  // namespace crew::workloads
