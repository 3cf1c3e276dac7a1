// FetchOptions' checks and check_fetch_url: what is refused before any transfer starts.
#include <curl/curl.h>
#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "crew/workloads/fetch.hpp"

namespace crew::workloads {
namespace {

constexpr int kMaxRetries = 10;

}  // namespace

void validate(const FetchOptions& options) {
  if (options.connect_timeout.count() <= 0) {
    throw std::invalid_argument("connect_timeout must be more than 0 ms");
  }
  if (options.timeout.count() <= 0) throw std::invalid_argument("timeout must be more than 0 ms");
  if (options.retries < 0 || options.retries > kMaxRetries) {
    throw std::invalid_argument(
        fmt::format("retries must be between 0 and {}, got {}", kMaxRetries, options.retries));
  }
  if (options.retry_backoff.count() < 0 || options.retry_backoff > std::chrono::minutes(1)) {
    throw std::invalid_argument("retry_backoff must be between 0 and 60 s");
  }
  if (options.max_redirects < 0 || options.max_redirects > 50) {
    throw std::invalid_argument("max_redirects must be between 0 and 50");
  }
  if (options.low_speed_time.count() < 0 || options.low_speed_time > std::chrono::hours(1)) {
    throw std::invalid_argument("low_speed_time must be between 0 and 3600 s");
  }
  if ((options.low_speed_limit == 0) != (options.low_speed_time.count() == 0)) {
    throw std::invalid_argument(
        "low_speed_limit and low_speed_time must be both 0 (off) or both more than 0");
  }
  if (options.low_speed_limit > static_cast<std::uint64_t>(std::numeric_limits<long>::max())) {
    throw std::invalid_argument("low_speed_limit is too large");
  }
}

std::string check_fetch_url(std::string_view url) {
  if (url.empty()) return "an empty URL (\"\") cannot be fetched";
  // curl takes a C string: past a NUL it would see another URL than the one checked here.
  const auto control = std::find_if(url.begin(), url.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
  if (control != url.end()) {
    return fmt::format("a URL cannot contain a control character (byte 0x{:02x} at position {})",
                       static_cast<unsigned char>(*control), control - url.begin() + 1);
  }
  CURLU* handle = curl_url();
  if (handle == nullptr) throw std::bad_alloc();
  const std::string text(url);
  std::string problem;
  const CURLUcode code =
      curl_url_set(handle, CURLUPART_URL, text.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) {
    problem =
        code == CURLUE_BAD_SCHEME || text.find("://") == std::string::npos
            ? fmt::format("not a URL: expected http://HOST/… or https://HOST/…, got \"{}\"", url)
            : fmt::format("not a valid URL ({}): \"{}\"", curl_url_strerror(code), url);
  } else {
    char* scheme = nullptr;
    curl_url_get(handle, CURLUPART_SCHEME, &scheme, 0);
    const std::string_view name = scheme == nullptr ? "" : scheme;
    if (name != "http" && name != "https") {
      problem = fmt::format("only http:// and https:// URLs can be fetched, got \"{}\"", url);
    }
    curl_free(scheme);
  }
  curl_url_cleanup(handle);
  return problem;
}

}  // namespace crew::workloads
