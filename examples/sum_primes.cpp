// Demonstrates the article's CPU-bound example, the sum of the primes below 1,000,000 on a pool,
// translated from Python's multiprocessing.Pool to crew::ThreadPool (no GIL, so threads will do).
//
// The article, in IPython:
//
//   %%time
//   with Pool() as p:
//       answer = sum(p.map(is_prime, range(1000000)))
//
// Exits 0 only when the answer is the known sum, 37550402023 (it runs as a smoke test).
#include <fmt/format.h>
#include <crew/thread_pool.hpp>
#include <crew/timing.hpp>
#include <crew/workloads/primes.hpp>

#include <cstdint>
#include <numeric>
#include <ranges>

int main() {
  std::int64_t answer = 0;
  const crew::Timing timing = crew::timed([&] {
    crew::ThreadPool pool;  // like Pool(): one worker per CPU this process may use
    auto results = pool.map(crew::workloads::is_prime,
                            std::views::iota(std::int64_t{0}, std::int64_t{1'000'000}));
    answer = std::accumulate(results.begin(), results.end(), std::int64_t{0});
  });

  fmt::print("answer = {}\n{}", answer, crew::format_timing(timing));
  if (answer != 37'550'402'023) {
    fmt::print(stderr, "sum_primes: wrong answer {}, expected 37550402023\n", answer);
    return 1;
  }
  return 0;
}
