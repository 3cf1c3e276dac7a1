// Demonstrates the article's IO-bound example, fetching 13 URLs, translated from Python's
// urllib + ThreadPoolExecutor(4) to crew::workloads::Fetcher (libcurl) on a crew::ThreadPool.
// The URLs are the article's paths on a crew::LatencyServer started here, which waits 200 ms
// before each answer like a distant web server, so the example needs no internet.
//
// The article, in IPython:
//
//   %%time
//   for url in urls:
//       with urllib.request.urlopen(url) as src:
//           ...
//
//   %%time
//   with ThreadPoolExecutor(4) as executor:
//       results = executor.map(urllib.request.urlopen, urls)
//
// Exits 0 only when every URL came back whole in both runs (it runs as a smoke test).
#include <fmt/format.h>
#include <crew/latency_server.hpp>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>
#include <crew/workloads/fetch.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace {

using crew::workloads::Fetcher;
using crew::workloads::FetchResult;

constexpr std::uint64_t kBodyBytes = 50 * 1024;

// urlopen for a pool: each worker thread keeps one Fetcher (one libcurl handle), so its connection
// to the server stays open from one URL to the next.
FetchResult fetch(const std::string& url) {
  thread_local Fetcher fetcher;
  return fetcher.fetch(url);
}

bool check(std::string_view how, const std::vector<FetchResult>& results,
           const crew::Timing& timing) {
  bool whole = true;
  for (const FetchResult& result : results) {
    if (!result.ok() || result.bytes != kBodyBytes) {
      fmt::print(stderr, "fetch_urls: {}: {} gave status {}, {} bytes, error \"{}\"\n", how,
                 result.url, result.status, result.bytes, result.error);
      whole = false;
    }
  }
  fmt::print("{}: {} URLs fetched\n{}", how, results.size(), crew::format_timing(timing));
  return whole;
}

}  // namespace

int main() {
  crew::LatencyServer server({.latency = std::chrono::milliseconds(200), .body_bytes = kBodyBytes});
  server.start();
  const std::vector<std::string> urls = crew::workloads::local_urls(server.port(), 13);

  // The article's loop: one URL after the other, 13 × 200 ms.
  auto serial = crew::timed([&] {
    std::vector<FetchResult> results;
    for (const std::string& url : urls) results.push_back(fetch(url));
    return results;
  });
  const bool serial_ok = check("for url in urls", serial.value, serial.timing);

  // The article's ThreadPoolExecutor(4): 4 URLs wait at once, so 4 rounds of 200 ms.
  auto pooled = crew::timed([&] {
    crew::ThreadPool pool({.workers = 4});
    return pool.map(fetch, urls);
  });
  const bool pooled_ok = check("ThreadPool(4).map(fetch, urls)", pooled.value, pooled.timing);

  server.stop();
  return serial_ok && pooled_ok ? 0 : 1;
}
