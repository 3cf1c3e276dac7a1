// crew-test-label: process
// Soak: many tasks, 1 % of them crash their worker (abort or SIGSEGV, chosen by a seeded RNG).
// Every task is accounted for exactly once: its right value, or crew::WorkerCrashed for exactly
// the inputs chosen to crash; none lost, none duplicated.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

// A worker's SIGSEGV must kill it, as in production: under AddressSanitizer the runtime would
// catch it and exit with status 1 instead.
extern "C" const char* __asan_default_options() { return "handle_segv=0:handle_abort=0"; }

namespace crew {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Inputs carry what the task must do in their low two bits: 1 aborts, 2 raises SIGSEGV.
std::int64_t soak_task(std::int64_t input) {
  switch (input & 3) {
    case 1:
      std::abort();
    case 2:
      ::raise(SIGSEGV);
      break;
    default:
      break;
  }
  return input * 3 + 1;
}

TEST(ProcessPoolSoakTest, EveryTaskIsAccountedForOnce) {
  if (kSanitized) GTEST_SKIP() << "1,000 worker restarts take too long under a sanitizer";
  constexpr std::size_t kTasks = 100'000;
  std::mt19937_64 rng(20240610);
  std::bernoulli_distribution crashes(0.01);
  std::vector<std::int64_t> input(kTasks);
  std::size_t planned_crashes = 0;
  for (std::size_t i = 0; i < kTasks; ++i) {
    std::int64_t how = 0;
    if (crashes(rng)) {
      how = (rng() & 1) ? 1 : 2;
      ++planned_crashes;
    }
    input[i] = static_cast<std::int64_t>(i) * 4 + how;
  }
  const auto start = std::chrono::steady_clock::now();
  ProcessPool pool({.workers = 2, .crash_loop_deaths = kTasks});
  const auto outcomes = pool.map_outcomes(soak_task, input, {.chunksize = 1});
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  ASSERT_EQ(outcomes.size(), kTasks);
  std::size_t crashed = 0;
  for (std::size_t i = 0; i < kTasks; ++i) {
    const bool must_crash = (input[i] & 3) != 0;
    if (outcomes[i].has_value()) {
      ASSERT_FALSE(must_crash) << "item " << i << " should have crashed its worker";
      ASSERT_EQ(outcomes[i].value(), input[i] * 3 + 1) << "item " << i;
    } else {
      ASSERT_TRUE(must_crash) << "item " << i << ": " << outcomes[i].error_message();
      try {
        std::rethrow_exception(outcomes[i].error());
      } catch (const WorkerCrashed& error) {
        EXPECT_EQ(error.signal(), (input[i] & 3) == 1 ? SIGABRT : SIGSEGV) << error.what();
      } catch (...) {
        FAIL() << "item " << i << ": " << outcomes[i].error_message();
      }
      ++crashed;
    }
  }
  EXPECT_EQ(crashed, planned_crashes);
  const ProcessPoolStats stats = pool.stats();
  EXPECT_EQ(stats.crashes, planned_crashes);
  EXPECT_TRUE(pool.broken_reason().empty()) << pool.broken_reason();
  std::printf("soak: %zu tasks, %zu crashes, %lld ms\n", kTasks, planned_crashes,
              static_cast<long long>(took.count()));
  RecordProperty("soak_ms", static_cast<int>(took.count()));
  RecordProperty("soak_crashes", static_cast<int>(planned_crashes));
}

}  // namespace
}  // namespace crew
