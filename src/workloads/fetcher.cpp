// Fetcher: one reused curl easy handle, run by a private multi handle so that a stop wakes it.
#include <curl/curl.h>

#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "crew/workloads/fetch.hpp"
#include "workloads/fetch_transfer.hpp"

namespace crew::workloads {

using detail::FetchClock;

struct Fetcher::Impl {
  CURL* easy = nullptr;
  // A private multi handle runs the easy one, so that a stop can wake its wait at once
  // (curl_multi_wakeup) where curl_easy_perform would notice only at its next progress call, up to
  // a second later. It also holds the connection cache that keeps connections alive between calls.
  CURLM* multi = nullptr;
  FetchOptions options;
  detail::Transfer transfer;

  ~Impl() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  // One attempt: runs the transfer to its end, or until `stop` (then CURLE_ABORTED_BY_CALLBACK).
  CURLcode perform(std::stop_token stop) {
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) return CURLE_FAILED_INIT;
    CURLcode result = CURLE_ABORTED_BY_CALLBACK;
    {
      std::stop_callback wake(stop, [this] { curl_multi_wakeup(multi); });
      for (bool done = false; !done;) {
        int running = 0;
        curl_multi_perform(multi, &running);
        int left = 0;
        while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
          if (message->msg == CURLMSG_DONE) {
            result = message->data.result;
            done = true;
          }
        }
        if (done || stop.stop_requested()) break;
        curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
      }
    }
    // A transfer removed before its end loses its connection; a finished one keeps it cached.
    curl_multi_remove_handle(multi, easy);
    return result;
  }
};

Fetcher::Fetcher(FetchOptions options) : impl_(std::make_unique<Impl>()) {
  validate(options);
  detail::ensure_curl_initialized();
  impl_->easy = curl_easy_init();
  impl_->multi = curl_multi_init();
  if (impl_->easy == nullptr || impl_->multi == nullptr) {
    throw std::runtime_error("libcurl could not make a handle");
  }
  impl_->options = options;
  detail::configure(impl_->easy, options, impl_->transfer);
}

Fetcher::~Fetcher() = default;
Fetcher::Fetcher(Fetcher&&) noexcept = default;
Fetcher& Fetcher::operator=(Fetcher&&) noexcept = default;

const FetchOptions& Fetcher::options() const noexcept { return impl_->options; }

void Fetcher::set_options(const FetchOptions& options) {
  validate(options);
  impl_->options = options;
  detail::configure(impl_->easy, options, impl_->transfer);
}

FetchResult Fetcher::fetch(std::string_view url, std::stop_token stop) {
  Impl& impl = *impl_;
  FetchResult result;
  result.url = std::string(url);
  const FetchClock::time_point start = FetchClock::now();
  detail::prepare(impl.easy, result.url, impl.transfer);
  std::chrono::milliseconds backoff = impl.options.retry_backoff;
  for (int attempt = 0;; ++attempt) {
    if (stop.stop_requested()) {
      if (result.attempts == 0) result.error = std::string(kNotFetchedStopped);
      break;
    }
    impl.transfer.reset();
    const CURLcode code = impl.perform(stop);
    ++result.attempts;
    detail::AttemptOutcome outcome =
        detail::read_outcome(impl.easy, code, impl.transfer, impl.options);
    result.status = outcome.status;
    result.effective_url = std::move(outcome.effective_url);
    result.redirects = outcome.redirects;
    result.bytes = impl.transfer.bytes;
    result.error = std::move(outcome.error);
    if (!outcome.transient || attempt >= impl.options.retries) break;
    if (!detail::sleep_unless_stopped(backoff, stop)) break;
    backoff *= 2;
  }
  if (impl.options.keep_body) result.body = std::move(impl.transfer.body);
  result.seconds = detail::seconds_since(start);
  return result;
}

}  // namespace crew::workloads
