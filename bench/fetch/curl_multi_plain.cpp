// The baseline that crew's event loop must beat: the plain libcurl multi loop, as libcurl's own
// examples write it (curl_multi_perform, then curl_multi_poll), on the same 2,000 URLs × 100 ms ×
// 5 KiB of a loopback `crew serve` as BM_Fetch_Many, in the same run.
//
//   BM_CurlMultiPlain_Many/concurrency:C   C easy handles, each re-added with the next URL as soon
//                                          as its transfer ends; one multi handle, connection
//                                          cache of C
//
// curl_multi_perform walks every transfer on each wake-up; crew's loop (fetch_with_event_loop)
// drives curl_multi_socket_action from epoll instead, touching only the sockets that are ready.
// Checked outside the timed region: every URL 200 with the whole body, one request per URL at the
// server.
#include <benchmark/benchmark.h>
#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench_config.hpp"
#include "crew/timing.hpp"
#include "crew/workloads/fetch.hpp"
#include "fetch/serve_process.hpp"

namespace {

struct PlainResult {
  long status = 0;
  std::uint64_t bytes = 0;
  CURLcode code = CURLE_OK;
};

std::size_t count_body(char*, std::size_t size, std::size_t count, void* user) {
  static_cast<PlainResult*>(user)->bytes += size * count;
  return size * count;
}

// The loop under test. Returns one result per URL and the connections opened.
std::vector<PlainResult> plain_multi_loop(const std::vector<std::string>& urls,
                                          std::size_t concurrency, std::size_t& connections) {
  std::vector<PlainResult> results(urls.size());
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(concurrency));
  std::vector<CURL*> handles;
  std::size_t next = 0;
  auto start = [&](CURL* easy) {
    curl_easy_setopt(easy, CURLOPT_URL, urls[next].c_str());
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &results[next]);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, &results[next]);
    ++next;
    curl_multi_add_handle(multi, easy);
  };
  for (std::size_t i = 0; i < concurrency && next < urls.size(); ++i) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &count_body);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    handles.push_back(easy);
    start(easy);
  }
  std::size_t done = 0;
  while (done < urls.size()) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      PlainResult* result = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &result);
      result->code = message->data.result;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &result->status);
      long connects = 0;
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
      connections += static_cast<std::size_t>(connects);
      curl_multi_remove_handle(multi, easy);
      ++done;
      if (next < urls.size()) start(easy);
    }
    if (done < urls.size()) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  for (CURL* easy : handles) curl_easy_cleanup(easy);
  curl_multi_cleanup(multi);
  return results;
}

void BM_CurlMultiPlain_Many(benchmark::State& state, std::size_t concurrency) {
  const std::size_t url_count = crew_bench::fetch_many_urls();
  std::unique_ptr<crew_bench::ServeProcess> server;
  std::vector<std::string> urls;
  try {
    server = std::make_unique<crew_bench::ServeProcess>(
        std::to_string(crew_bench::fetch_many_latency_ms()) + "ms",
        std::to_string(crew_bench::kFetchManyBodyBytes));
    urls = crew::workloads::local_urls(server->port(), url_count);
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
    return;
  }
  if (crew::workloads::reserve_file_descriptors(concurrency).concurrency < concurrency) {
    state.SkipWithError("open-file limit too low");
    return;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const double ideal_s = static_cast<double>((url_count + concurrency - 1) / concurrency) *
                         crew_bench::fetch_many_latency_ms() / 1000.0;
  double wall_s = 0;
  double cpu_s = 0;
  double connections_total = 0;
  for (auto _ : state) {
    std::uint64_t requests_before = 0;
    try {
      requests_before = server->stats().requests;
    } catch (const std::exception& error) {
      state.SkipWithError(error.what());
      break;
    }
    std::size_t connections = 0;
    const crew::Stopwatch watch;
    const std::vector<PlainResult> results = plain_multi_loop(urls, concurrency, connections);
    const crew::Timing timing = watch.elapsed();
    const double seconds = std::chrono::duration<double>(timing.wall).count();
    state.SetIterationTime(seconds);

    std::string problem;
    for (std::size_t i = 0; i < results.size() && problem.empty(); ++i) {
      if (results[i].code != CURLE_OK || results[i].status != 200 ||
          results[i].bytes != crew_bench::kFetchManyBodyBytes) {
        problem = urls[i] + ": " + curl_easy_strerror(results[i].code) + ", status " +
                  std::to_string(results[i].status) + ", " + std::to_string(results[i].bytes) +
                  " bytes";
      }
    }
    try {
      if (problem.empty() && server->stats().requests - requests_before != urls.size()) {
        problem = "the server did not see one request per URL";
      }
    } catch (const std::exception& error) {
      problem = error.what();
    }
    if (!problem.empty()) {
      state.SkipWithError(problem.c_str());
      break;
    }
    wall_s += seconds;
    cpu_s += std::chrono::duration<double>(timing.cpu()).count();
    connections_total += static_cast<double>(connections);
  }
  if (state.error_occurred()) return;
  using benchmark::Counter;
  state.counters["ideal_ratio"] = Counter(wall_s / ideal_s, Counter::kAvgIterations);
  state.counters["cpu_ms"] = Counter(cpu_s * 1e3, Counter::kAvgIterations);
  state.counters["cpu_per_req_us"] =
      Counter(cpu_s * 1e6 / static_cast<double>(url_count), Counter::kAvgIterations);
  state.counters["loop_connections"] = Counter(connections_total, Counter::kAvgIterations);
  crew_bench::report_per(state, url_count, "request");
}

[[maybe_unused]] const bool kRegistered = [] {
  for (const std::int64_t concurrency : crew_bench::fetch_many_concurrency()) {
    benchmark::RegisterBenchmark(
        ("BM_CurlMultiPlain_Many/concurrency:" + std::to_string(concurrency)).c_str(),
        [concurrency](benchmark::State& state) {
          BM_CurlMultiPlain_Many(state, static_cast<std::size_t>(concurrency));
        })
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime();
  }
  return true;
}();

}  // namespace
