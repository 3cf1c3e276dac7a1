// One libcurl transfer as crew makes it, shared by Fetcher (fetcher.cpp) and the event loop
// (fetch_event_loop.cpp): the options every easy handle gets, the per-transfer state its
// callbacks fill, and how an attempt's outcome becomes a FetchResult's error.
#pragma once

#include <curl/curl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>

#include "crew/workloads/fetch.hpp"

namespace crew::detail {

using FetchClock = std::chrono::steady_clock;

// curl_global_init, once per process. Throws: std::runtime_error when it fails.
void ensure_curl_initialized();

// One transfer's state, shared by the easy-handle callbacks.
struct Transfer {
  std::uint64_t bytes = 0;
  std::string body;
  bool keep_body = false;
  // FetchOptions::max_filesize (0: none), checked as the body arrives: curl's own
  // CURLOPT_MAXFILESIZE_LARGE (7.88) acts only on a Content-Length, never on a chunked body.
  std::uint64_t max_filesize = 0;
  bool too_large = false;  // the body passed max_filesize: the write callback ended the transfer
  // errno of a socket() that failed (EMFILE at the open-file limit): curl itself reports only
  // "Failed to connect to HOST port P", which blames the server.
  int socket_errno = 0;
  // The Content-Length of the response being read (-1: none), from the header callback: curl's
  // CURLINFO_CONTENT_LENGTH_DOWNLOAD_T is still -1 when it refuses a head over max_filesize.
  std::int64_t announced_length = -1;
  std::string no_proxy;  // no_proxy_list(), read once by configure
  // The exceptions set on the handle for the URL in hand (prepare), grown by each redirect to a
  // loopback host that they do not name yet (see allow_redirect_target).
  std::string url_no_proxy;
  CURL* easy = nullptr;  // the handle whose callbacks get this transfer (configure)
  std::array<char, CURL_ERROR_SIZE> error_buffer{};

  void reset() {
    bytes = 0;
    body.clear();
    too_large = false;
    socket_errno = 0;
    announced_length = -1;
    error_buffer[0] = '\0';
  }
};

// Options that every transfer of crew gets, whatever the URL.
void configure(CURL* easy, const workloads::FetchOptions& options, Transfer& transfer);

// The proxy exceptions crew gives curl (CURLOPT_NOPROXY), which curl matches on each hop's
// parsed host, redirects included: localhost, 127.0.0.0/8 and ::1, then the environment's
// no_proxy (or NO_PROXY), which setting CURLOPT_NOPROXY would otherwise discard. "*" when the
// environment says "*".
[[nodiscard]] std::string no_proxy_list();

// Whether `host` (as curl_url gives it: a name, an IPv4 literal, or an IPv6 literal in brackets)
// is this machine: localhost or *.localhost, 127.0.0.0/8, ::1, or IPv4-mapped ::ffff:127.x.x.x.
[[nodiscard]] bool is_loopback_host(std::string_view host);

// Adds `url`'s host to the transfer's proxy exceptions when it is loopback and not yet named, and
// gives the handle the new list. Called by prepare, and by the header callback for each Location,
// before curl follows it: curl matches every hop against the exceptions, but by exact spelling.
void allow_loopback_host(const std::string& url, Transfer& transfer, const char* base = nullptr);

// Points `easy` at `url` for its next attempt. A loopback host is added to the transfer's proxy
// exceptions by its exact spelling: curl 7.88 matches IPv6 exceptions only as exact strings (its
// CIDR match misses ::ffff:127.0.0.1), so no list written in advance covers every spelling.
void prepare(CURL* easy, const std::string& url, Transfer& transfer);

// What one finished attempt came to.
struct AttemptOutcome {
  long status = 0;  // the final status, ≥ 200; 0 when none came (an interim 1xx is not one)
  std::string effective_url;
  int redirects = 0;
  std::string error;       // empty on success
  bool transient = false;  // worth a retry (curl --retry's list, plus connection errors)
};

// Reads the outcome of the attempt that `easy` just ended with `code`.
[[nodiscard]] AttemptOutcome read_outcome(CURL* easy, CURLcode code, const Transfer& transfer,
                                          const workloads::FetchOptions& options);

// Sleeps for `duration` unless `stop` is requested first. Returns false when stopped.
bool sleep_unless_stopped(std::chrono::milliseconds duration, std::stop_token stop);

[[nodiscard]] double seconds_since(FetchClock::time_point start);

}  // namespace crew::detail
