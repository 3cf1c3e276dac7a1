#include "workloads/fetch_transfer.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
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

namespace {

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  if (transfer->max_filesize != 0 && n > transfer->max_filesize - transfer->bytes) {
    // Fewer bytes taken than given: curl ends the transfer (CURLE_WRITE_ERROR).
    transfer->too_large = true;
    return 0;
  }
  transfer->bytes += n;
  if (transfer->keep_body) transfer->body.append(data, n);
  return n;
}

// Each header line of each response: a Location's host, when loopback, joins the exceptions
// before curl follows it to a new connection; a Content-Length is kept for the message.
std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  constexpr std::string_view kLocation = "location:";
  constexpr std::string_view kContentLength = "content-length:";
  std::string_view line(data, n);
  const auto starts_with = [&line](std::string_view name) {
    return line.size() > name.size() &&
           std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
             return a == std::tolower(static_cast<unsigned char>(b));
           });
  };
  if (line.starts_with("HTTP/")) {
    transfer->announced_length = -1;  // a new response (after a 1xx or a redirect)
  } else if (starts_with(kContentLength)) {
    line.remove_prefix(kContentLength.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    std::int64_t length = 0;
    const auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), length);
    if (error == std::errc() && end != line.data()) transfer->announced_length = length;
  } else if (starts_with(kLocation)) {
    line.remove_prefix(kLocation.size());
    const auto first = line.find_first_not_of(" \t");
    const auto last = line.find_last_not_of(" \t\r\n");
    if (first != std::string_view::npos && last != std::string_view::npos && last >= first) {
      char* base = nullptr;
      curl_easy_getinfo(transfer->easy, CURLINFO_EFFECTIVE_URL, &base);
      allow_loopback_host(std::string(line.substr(first, last - first + 1)), *transfer, base);
    }
  }
  return n;
}

// curl's own socket(), keeping its errno for the message.
curl_socket_t on_open_socket(void* user, curlsocktype /*purpose*/, curl_sockaddr* address) {
  auto* transfer = static_cast<Transfer*>(user);
  const int fd = ::socket(address->family, address->socktype, address->protocol);
  if (fd < 0) {
    transfer->socket_errno = errno;
    return CURL_SOCKET_BAD;
  }
  return fd;
}

// "Too many open files (RLIMIT_NOFILE soft limit 30)": EMFILE names the limit that was hit.
std::string describe_socket_errno(int error) {
  std::string text = std::strerror(error);
  if (error == EMFILE) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      text += fmt::format(" (RLIMIT_NOFILE soft limit {})", limit.rlim_cur);
    }
  } else if (error == ENFILE) {
    text += " (the system-wide limit, fs.file-max)";
  }
  return text;
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

// A status that sends the client elsewhere with its Location; 300 and 304 need none.
bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// The error text of an attempt that ended with `code` and final status `status`; empty for a
// success.
std::string describe_failure(CURL* easy, CURLcode code, long status, long raw_status,
                             const Transfer& transfer, const FetchOptions& options) {
  if (transfer.too_large) {
    return fmt::format("too large: the body passed the maximum file size of {} bytes",
                       options.max_filesize);
  }
  if (code == CURLE_OK) {
    if (status >= 400) return fmt::format("HTTP {}", status);
    if (status == 0) return fmt::format("no final HTTP response (only HTTP {})", raw_status);
    // curl follows every redirect it can; one left is one whose Location was missing or empty.
    if (options.max_redirects > 0 && is_redirect(status)) {
      return fmt::format("HTTP {} redirect with no Location to follow", status);
    }
    return {};
  }
  if (code == CURLE_ABORTED_BY_CALLBACK) return std::string(kNotFetchedStopped);
  if (code == CURLE_COULDNT_CONNECT && transfer.socket_errno != 0) {
    return fmt::format("cannot open a socket: {}", describe_socket_errno(transfer.socket_errno));
  }
  if (code == CURLE_FILESIZE_EXCEEDED) {
    curl_off_t announced = transfer.announced_length;
    if (announced < 0) curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    return fmt::format(
        "too large: the response announced {} bytes, over the maximum file size "
        "of {} bytes",
        announced, options.max_filesize);
  }
  const std::string_view detail(transfer.error_buffer.data());
  std::string text = curl_easy_strerror(code);
  if (!detail.empty()) text = fmt::format("{}: {}", text, detail);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    // curl ends a too-slow transfer with the same code as a timeout; only its message differs
    // (unchanged since curl 7.10).
    if (options.low_speed_limit > 0 && detail.starts_with("Operation too slow")) {
      return fmt::format("too slow: under {} bytes/s for {} s: {}", options.low_speed_limit,
                         options.low_speed_time.count(), detail);
    }
    return fmt::format("timeout after {} ms: {}", options.timeout.count(), text);
  }
  return text;
}

}  // namespace

std::string no_proxy_list() {
  std::string list = "localhost,127.0.0.0/8,::1";
  // curl reads no_proxy, then NO_PROXY, but only when CURLOPT_NOPROXY is not set.
  const char* env = std::getenv("no_proxy");
  if (env == nullptr || *env == '\0') env = std::getenv("NO_PROXY");
  if (env != nullptr && *env != '\0') {
    // curl honours "*" (no proxy for any host) only as the whole list.
    if (std::string_view(env) == "*") return "*";
    list += ',';
    list += env;
  }
  return list;
}

bool is_loopback_host(std::string_view host) {
  std::string name(host);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
    // A zone ("fe80::1%eth0") is never loopback; inet_pton refuses it anyway.
    in6_addr address{};
    if (inet_pton(AF_INET6, name.c_str(), &address) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&address)) return true;
    return IN6_IS_ADDR_V4MAPPED(&address) && address.s6_addr[12] == 127;
  }
  in_addr address{};
  if (inet_pton(AF_INET, name.c_str(), &address) == 1) {
    return (ntohl(address.s_addr) >> 24) == 127;
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name.ends_with('.')) name.pop_back();
  // curl resolves these itself to 127.0.0.1 and ::1 (RFC 6761), never through DNS.
  return name == "localhost" || name.ends_with(".localhost");
}

void allow_loopback_host(const std::string& url, Transfer& transfer, const char* base) {
  if (transfer.url_no_proxy == "*") return;
  CURLU* parsed = curl_url();
  char* host = nullptr;
  // A relative Location resolves against the URL that sent it.
  if (parsed != nullptr &&
      (base == nullptr || curl_url_set(parsed, CURLUPART_URL, base, 0) == CURLUE_OK) &&
      curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK && host != nullptr &&
      is_loopback_host(host)) {
    std::string_view name(host);
    if (name.starts_with('[')) name = name.substr(1, name.size() - 2);
    bool named = false;
    for (std::size_t start = 0; start <= transfer.url_no_proxy.size() && !named;) {
      const std::size_t comma =
          std::min(transfer.url_no_proxy.find(',', start), transfer.url_no_proxy.size());
      named = std::string_view(transfer.url_no_proxy).substr(start, comma - start) == name;
      start = comma + 1;
    }
    if (!named) {
      transfer.url_no_proxy += ',';
      transfer.url_no_proxy += name;
      curl_easy_setopt(transfer.easy, CURLOPT_NOPROXY, transfer.url_no_proxy.c_str());
    }
  }
  curl_free(host);
  curl_url_cleanup(parsed);
}

void prepare(CURL* easy, const std::string& url, Transfer& transfer) {
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  transfer.easy = easy;
  transfer.url_no_proxy = transfer.no_proxy;
  curl_easy_setopt(easy, CURLOPT_NOPROXY, transfer.url_no_proxy.c_str());
  allow_loopback_host(url, transfer);
}

AttemptOutcome read_outcome(CURL* easy, CURLcode code, const Transfer& transfer,
                            const FetchOptions& options) {
  AttemptOutcome outcome;
  long raw_status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &raw_status);
  // "100 Continue" (or any 1xx) is interim: the final response is still to come.
  outcome.status = raw_status >= 200 ? raw_status : 0;
  char* effective = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK &&
      effective != nullptr) {
    outcome.effective_url = effective;
  }
  long redirects = 0;
  curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects);
  outcome.redirects = static_cast<int>(redirects);
  outcome.error = describe_failure(easy, code, outcome.status, raw_status, transfer, options);
  outcome.transient =
      !outcome.error.empty() && !transfer.too_large && is_transient(code, outcome.status);
  return outcome;
}

// Options that every transfer of crew gets, whatever the URL.
void configure(CURL* easy, const FetchOptions& options, Transfer& transfer) {
  static const std::string user_agent = std::string("crew/") + CREW_VERSION_STRING;
  transfer.keep_body = options.keep_body;
  transfer.max_filesize = options.max_filesize;
  // Threads and signals do not mix: no SIGALRM for timeouts (the resolver is threaded anyway).
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &on_open_socket);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
  transfer.easy = easy;
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error_buffer.data());
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, options.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  // A redirect must not lead to file:// or anything else check_fetch_url refuses.
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // An announced Content-Length over the limit fails before the body (the write callback
  // catches the rest).
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(std::min<std::uint64_t>(
                       options.max_filesize, std::numeric_limits<curl_off_t>::max())));
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options.low_speed_limit));
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.low_speed_time.count()));
  // Loopback never goes through a proxy from the environment (tests and benchmarks must stay on
  // this machine); other hosts follow http_proxy / no_proxy as curl does.
  transfer.no_proxy = no_proxy_list();
  curl_easy_setopt(easy, CURLOPT_NOPROXY, transfer.no_proxy.c_str());
  curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent.c_str());
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
