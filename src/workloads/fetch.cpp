// The article's URLs for local runs, and the open-file budget of crew fetch's transfers. The
// fetching itself: fetcher.cpp (one easy handle), fetch_event_loop.cpp (one multi handle),
// fetch_engines.cpp (fetch_urls); one transfer's curl set-up: fetch_transfer.cpp.
#include "crew/workloads/fetch.hpp"

#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>

namespace crew::workloads {

std::span<const std::string_view> article_url_paths() noexcept {
  // The article's 13 URLs: www.python.org and 12 pages of docs.python.org.
  static constexpr std::array<std::string_view, 13> kPaths = {
      "/",
      "/3/",
      "/3/whatsnew/3.7.html",
      "/3/tutorial/index.html",
      "/3/library/index.html",
      "/3/reference/index.html",
      "/3/using/index.html",
      "/3/howto/index.html",
      "/3/installing/index.html",
      "/3/distributing/index.html",
      "/3/extending/index.html",
      "/3/c-api/index.html",
      "/3/faq/index.html",
  };
  return kPaths;
}

std::vector<std::string> local_urls(std::uint16_t port, std::size_t count, std::string_view host) {
  const bool ipv6 = host.find(':') != std::string_view::npos;
  const std::string origin =
      ipv6 ? fmt::format("http://[{}]:{}", host, port) : fmt::format("http://{}:{}", host, port);
  const auto paths = article_url_paths();
  std::vector<std::string> urls;
  urls.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    urls.push_back(i < paths.size() ? origin + std::string(paths[i])
                                    : fmt::format("{}/page/{}", origin, i + 1));
  }
  return urls;
}

// --- file descriptors ------------------------------------------------------------------------

std::size_t fds_per_transfer(FetchEngine engine) noexcept {
  switch (engine) {
    case FetchEngine::kEventLoop:
      return 1;
    case FetchEngine::kProcess:
      return 2;
    case FetchEngine::kThread:
    case FetchEngine::kSerial:
      return 3;
  }
  return 3;
}

FdBudget reserve_file_descriptors(std::size_t concurrency, std::size_t fds_each) noexcept {
  FdBudget budget;
  budget.concurrency = concurrency;
  fds_each = std::max<std::size_t>(fds_each, 1);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return budget;
  const rlim_t needed = static_cast<rlim_t>(concurrency * fds_each + kFdReserve);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    const rlim_t target =
        limit.rlim_max == RLIM_INFINITY ? needed : std::min<rlim_t>(needed, limit.rlim_max);
    if (target > limit.rlim_cur) {
      rlimit raised = limit;
      raised.rlim_cur = target;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        budget.raised = true;
        limit.rlim_cur = target;
      }
    }
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    const std::size_t fit = limit.rlim_cur > kFdReserve + fds_each
                                ? (static_cast<std::size_t>(limit.rlim_cur) - kFdReserve) / fds_each
                                : 1;
    budget.concurrency = fit;
    try {
      budget.warning = fmt::format(
          "concurrency {} lowered to {}: each transfer holds {} descriptor{} and the open-file "
          "limit (ulimit -n) is {} (hard limit {}); raise the hard limit to run more at once",
          concurrency, fit, fds_each, fds_each == 1 ? "" : "s",
          static_cast<unsigned long long>(limit.rlim_cur),
          limit.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                          : std::to_string(limit.rlim_max));
    } catch (...) {
      budget.warning = "concurrency lowered to fit the open-file limit (ulimit -n)";
    }
  }
  return budget;
}

}  // namespace crew::workloads
