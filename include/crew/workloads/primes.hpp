// The article's CPU-bound job: sum is_prime(i) over a range of integers. is_prime is the article's
// Python function transcribed exactly (same branches, same 6k±1 trial division, same return
// values), so that crew's figures compare against the article's like for like.
#pragma once

#include <cstdint>
#include <string_view>

namespace crew::workloads {

// The largest n accepted by sum_primes_below: the sum of the primes below 1e10 is about 2.2e18,
// within int64's 9.2e18, so no sum over [0, kMaxPrimesBelow) can overflow.
inline constexpr std::int64_t kMaxPrimesBelow = 10'000'000'000;

// The article's is_prime: x if x is prime, else 0. x ≤ 1 → 0; x ≤ 3 → x; even or divisible by 3
// → 0; otherwise trial division by 6k−1 and 6k+1 while the divisor's square is ≤ x.
// Defined for every int64 x. In the header so callers (benchmarks, pools' tasks) can inline it.
// Throws: nothing. Thread safety: safe.
constexpr std::int64_t is_prime(std::int64_t x) noexcept {
  if (x <= 1) return 0;
  if (x <= 3) return x;
  if (x % 2 == 0 || x % 3 == 0) return 0;
  // The article's `i*i <= x` as `i <= x / i`: the same condition for i > 0 (i*i ≤ x ⇔ i ≤ ⌊x/i⌋),
  // but it cannot overflow for any int64 x (i*i would, for x near INT64_MAX), and the compiler
  // takes x / i and the x % i below from one division instruction, so it costs nothing. Also
  // i + 2 ≤ √INT64_MAX + 2, far from overflow.
  for (std::int64_t i = 5; i <= x / i; i += 6) {
    if (x % i == 0 || x % (i + 2) == 0) return 0;
  }
  return x;
}

// The article's serial loop: the sum of is_prime(i) for i in [0, n), i.e. the sum of the primes
// below n. 37550402023 for n = 1'000'000; 3203324994356 for n = 10'000'000.
// Blocks: computes, about n^1.5 / ln n divisions (1e7: 1 to 6 s on this project's VM). Throws:
// std::invalid_argument naming "n" unless 0 ≤ n ≤ kMaxPrimesBelow. Thread safety: safe.
[[nodiscard]] std::int64_t sum_primes_below(std::int64_t n);

// The sum of is_prime(i) for i in [begin, end); sum_primes_in(0, n) == sum_primes_below(n), and
// ranges that tile [0, n) sum to it (how pools split the job).
// Throws: std::invalid_argument naming "begin" or "end" unless 0 ≤ begin ≤ end ≤ kMaxPrimesBelow.
// Thread safety: safe.
[[nodiscard]] std::int64_t sum_primes_in(std::int64_t begin, std::int64_t end);

// Parses a non-negative whole number as a user types it on a command line:
//   digits              "1000000"
//   digit separators    "1_000_000" (like Python: any single '_' between digits) or "1,000,000"
//                       (',' only between groups of three, so a decimal comma "1,5" is refused)
//   scientific          "1e7", "1E6", "2.5e6", "1.5e3" — accepted when the value is a whole number
//                       ("1.5e0" is refused), computed exactly in integers, never through double.
// The result is at most INT64_MAX; nothing wraps.
// Throws: std::invalid_argument, with the text quoted, for "", "abc", "-5", "0x10", " 5",
// "1.5", "1e20" (too large: says the largest), "1,5". Thread safety: safe.
[[nodiscard]] std::int64_t parse_count(std::string_view text);

// parse_count, then checks min ≤ value ≤ max. Messages name the option and show the bounds the
// way a user writes them: "--below must be between 0 and 1e10, got 1e11"; a malformed text gives
// e.g. "--below: expected a whole number such as 1000000, 1_000_000 or 1e6, got \"abc\"".
// Throws: std::invalid_argument as above, or naming "min" unless 0 ≤ min ≤ max.
// Thread safety: safe.
[[nodiscard]] std::int64_t parse_count_in_range(std::string_view text, std::int64_t min,
                                                std::int64_t max, std::string_view name);

}  // namespace crew::workloads
