#include "workloads/fetch_transfer.hpp"

#include <fmt/core.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "crew/version.hpp"

namespace crew::detail {

using workloads::FetchOptions;
using workloads::kNotFetchedStopped;

void ensure_curl_initialized() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) {
    throw std::runtime_error(
        fmt::format("libcurl could not be initialized: {}", curl_easy_strerror(code)));
  }
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  transfer->bytes += n;
  if (transfer->keep_body) transfer->body.append(data, n);
  return n;
}

// Options that every transfer of crew gets, whatever the URL.
void configure(CURL* easy, const FetchOptions& options, Transfer& transfer) {
  static const std::string user_agent = std::string("crew/") + CREW_VERSION_STRING;
  transfer.keep_body = options.keep_body;
  // Threads and signals do not mix: no SIGALRM for timeouts (the resolver is threaded anyway).
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error_buffer.data());
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, options.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  // A redirect must not lead to file:// or anything else check_fetch_url refuses.
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Loopback never goes through a proxy from the environment (tests and benchmarks must stay on
  // this machine); other hosts follow http_proxy / no_proxy as curl does.
  curl_easy_setopt(easy, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent.c_str());
}

bool is_transient(CURLcode code, long status) {
  switch (code) {
    case CURLE_OK:
      return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
             status == 504;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return true;
    default:
      return false;
  }
}

// The error text of an attempt that ended with `code` and `status`; empty for a success.
std::string describe_failure(CURLcode code, long status, const Transfer& transfer,
                             const FetchOptions& options) {
  if (code == CURLE_OK) return status >= 400 ? fmt::format("HTTP {}", status) : std::string();
  if (code == CURLE_ABORTED_BY_CALLBACK) return std::string(kNotFetchedStopped);
  const std::string_view detail(transfer.error_buffer.data());
  std::string text = curl_easy_strerror(code);
  if (!detail.empty()) text = fmt::format("{}: {}", text, detail);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return fmt::format("timeout after {} ms: {}", options.timeout.count(), text);
  }
  return text;
}

// Sleeps for `duration` unless `stop` is requested first. Returns false when stopped.
bool sleep_unless_stopped(std::chrono::milliseconds duration, std::stop_token stop) {
  std::mutex mu;
  std::condition_variable_any wake;
  std::unique_lock lock(mu);
  wake.wait_for(lock, stop, duration, [] { return false; });
  return !stop.stop_requested();
}

double seconds_since(FetchClock::time_point start) {
  return std::chrono::duration<double>(FetchClock::now() - start).count();
}

}  // namespace crew::detail
