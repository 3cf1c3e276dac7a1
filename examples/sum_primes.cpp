// Demonstrates the article's CPU-bound example, the sum of the primes below 1,000,000 on a pool,
// translated from Python's multiprocessing.Pool to crew::ThreadPool (no GIL, so threads will do)
// and to crew::ProcessPool (the article's own choice: forked worker processes).
//
// The article, in IPython:
//
//   %%time
//   with Pool() as p:
//       answer = sum(p.map(is_prime, range(1000000)))
//
// Exits 0 only when both answers are the known sum, 37550402023 (it runs as a smoke test).
#include <fmt/format.h>
#include <crew/process_pool.hpp>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>
#include <crew/workloads/primes.hpp>

#include <cstdint>
#include <numeric>
#include <ranges>
#include <string_view>

namespace {

constexpr std::int64_t kKnownSum = 37'550'402'023;

bool check(std::string_view pool, std::int64_t answer, const crew::Timing& timing) {
  fmt::print("{}: answer = {}\n{}", pool, answer, crew::format_timing(timing));
  if (answer != kKnownSum) {
    fmt::print(stderr, "sum_primes: {} gave {}, expected {}\n", pool, answer, kKnownSum);
    return false;
  }
  return true;
}

}  // namespace

int main() {
  const auto numbers = std::views::iota(std::int64_t{0}, std::int64_t{1'000'000});

  std::int64_t thread_answer = 0;
  const crew::Timing thread_timing = crew::timed([&] {
    crew::ThreadPool pool;  // like Pool(): one worker per CPU this process may use
    auto results = pool.map(crew::workloads::is_prime, numbers);
    thread_answer = std::accumulate(results.begin(), results.end(), std::int64_t{0});
  });

  // The same lines with processes, as the article ran them. is_prime crosses as a function
  // pointer (a forked worker has the same code at the same address); the numbers and results cross
  // as bytes, in chunks. The pool is destroyed inside timed(), so its workers have been reaped
  // and their CPU shows in the "Workers' CPU" line.
  std::int64_t process_answer = 0;
  const crew::Timing process_timing = crew::timed([&] {
    crew::ProcessPool pool;  // like Pool(): one worker process per CPU this process may use
    auto results = pool.map(crew::workloads::is_prime, numbers);
    process_answer = std::accumulate(results.begin(), results.end(), std::int64_t{0});
  });

  const bool thread_ok = check("ThreadPool", thread_answer, thread_timing);
  const bool process_ok = check("ProcessPool", process_answer, process_timing);
  return thread_ok && process_ok ? 0 : 1;
}
