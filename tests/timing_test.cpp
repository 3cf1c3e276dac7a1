// Tests for crew::Stopwatch, crew::timed and the %%time-style formatting.
#include "crew/timing.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

namespace crew {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

nanoseconds cpu_clock(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return std::chrono::seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec);
}

// Burns CPU in user mode until `clock` has advanced by `amount`, or a generous deadline passes
// (so a badly overloaded machine fails the assertion instead of hanging). The clock is checked
// only every few hundred thousand iterations so that syscalls add almost no sys time.
void burn_cpu(clockid_t clock, nanoseconds amount) {
  const nanoseconds start = cpu_clock(clock);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  volatile std::uint64_t sink = 0;
  while (cpu_clock(clock) - start < amount && std::chrono::steady_clock::now() < deadline) {
    std::uint64_t x = sink;
    for (int i = 0; i < 200'000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    sink = x;
  }
}

TEST(TimingTest, BusyLoopReportsUserTime) {
  const Timing t = timed([] { burn_cpu(CLOCK_THREAD_CPUTIME_ID, 50ms); });
  EXPECT_GE(t.user, 40ms);
  EXPECT_GE(t.cpu(), 40ms);
  EXPECT_GE(t.wall, 40ms);
  EXPECT_GT(t.parallelism(), 0.0);
}

TEST(TimingTest, SleepReportsWallTimeButLittleCpu) {
  const Timing t = timed([] { std::this_thread::sleep_for(100ms); });
  EXPECT_GE(t.wall, 100ms);
  EXPECT_LT(t.cpu(), t.wall / 2);
  EXPECT_LT(t.parallelism(), 0.5);
}

TEST(TimingTest, ReapedChildCpuIsCounted) {
  const Timing t = timed([] {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      burn_cpu(CLOCK_PROCESS_CPUTIME_ID, 50ms);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
  });
  EXPECT_GE(t.children_user, 40ms);
  EXPECT_GE(t.cpu(), t.children_user);
}

TEST(TimingTest, StopwatchElapsedGrows) {
  const Stopwatch watch;
  const Timing first = watch.elapsed();
  std::this_thread::sleep_for(5ms);
  const Timing second = watch.elapsed();
  EXPECT_GE(first.wall, 0ns);
  EXPECT_GE(second.wall, first.wall + 5ms);
}

TEST(TimingTest, TimedReturnsTheValue) {
  const Timed<int> result = timed([] { return 42; });
  EXPECT_EQ(result.value, 42);
  EXPECT_GE(result.timing.wall, 0ns);
}

TEST(TimingTest, TimedReturnsMoveOnlyValue) {
  auto result = timed([] { return std::make_unique<int>(7); });
  ASSERT_NE(result.value, nullptr);
  EXPECT_EQ(*result.value, 7);
}

TEST(TimingTest, ExceptionFromFnPropagates) {
  EXPECT_THROW((void)timed([]() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
}

TEST(TimingTest, PeakRssCoversLargeAllocation) {
  constexpr std::size_t kSize = 64 << 20;
  const Timing t = timed([] {
    auto block = std::make_unique<char[]>(kSize);
    // Touch every page so it becomes resident; volatile so the writes are not optimized away.
    volatile char* bytes = block.get();
    for (std::size_t i = 0; i < kSize; i += 4096) bytes[i] = 1;
  });
  EXPECT_GE(t.peak_rss_bytes, static_cast<std::int64_t>(kSize));
}

TEST(TimingTest, NestedStopwatchKeepsOuterPeak) {
  constexpr std::size_t kSize = 64 << 20;
  const Stopwatch outer;
  {
    auto block = std::make_unique<char[]>(kSize);
    volatile char* bytes = block.get();
    for (std::size_t i = 0; i < kSize; i += 4096) bytes[i] = 1;
  }
  // The inner reset would erase the 64 MiB peak from the kernel's mark; outer must still see it.
  const Timing inner = timed([] {});
  const Timing t = outer.elapsed();
  if (!t.peak_rss_is_block_peak) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  EXPECT_GE(t.peak_rss_bytes, static_cast<std::int64_t>(kSize));
  EXPECT_TRUE(inner.peak_rss_is_block_peak);
}

TEST(TimingTest, CpuSumsAllFourAndParallelismDividesByWall) {
  Timing t;
  t.wall = 100ms;
  t.user = 60ms;
  t.sys = 20ms;
  t.children_user = 100ms;
  t.children_sys = 20ms;
  EXPECT_EQ(t.cpu(), 200ms);
  EXPECT_DOUBLE_EQ(t.parallelism(), 2.0);
  EXPECT_EQ(Timing{}.parallelism(), 0.0);
}

TEST(TimingTest, FormatDurationMatchesIPython) {
  EXPECT_EQ(format_duration(0ns), "0 ns");
  EXPECT_EQ(format_duration(1ns), "1 ns");
  EXPECT_EQ(format_duration(512ns), "512 ns");
  EXPECT_EQ(format_duration(1500ns), "1.5 \u00b5s");
  EXPECT_EQ(format_duration(nanoseconds(8'270'000)), "8.27 ms");
  EXPECT_EQ(format_duration(122ms), "122 ms");
  EXPECT_EQ(format_duration(130ms), "130 ms");
  EXPECT_EQ(format_duration(3830ms), "3.83 s");
  EXPECT_EQ(format_duration(38300ms), "38.3 s");
  EXPECT_EQ(format_duration(63s), "1min 3s");
  EXPECT_EQ(format_duration(63500ms), "1min 3s");
  EXPECT_EQ(format_duration(60s), "1min");
  EXPECT_EQ(format_duration(3605s), "1h 5s");
  EXPECT_EQ(format_duration(std::chrono::hours(27)), "1d 3h");
}

TEST(TimingTest, FormatDurationRoundsBeforeChoosingUnit) {
  EXPECT_EQ(format_duration(nanoseconds(999'600)), "1 ms");
  EXPECT_EQ(format_duration(nanoseconds(999)), "999 ns");
  EXPECT_EQ(format_duration(nanoseconds(1'234'567)), "1.23 ms");
}

TEST(TimingTest, FormatDurationNegative) {
  EXPECT_EQ(format_duration(-122ms), "-122 ms");
  EXPECT_FALSE(format_duration(nanoseconds::min()).empty());
}

TEST(TimingTest, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(64LL << 20), "64 MiB");
  EXPECT_EQ(format_bytes(3'565'158), "3.4 MiB");
  EXPECT_EQ(format_bytes((1LL << 30) + (20LL << 20)), "1.02 GiB");
  EXPECT_EQ(format_bytes((1LL << 20) - 1), "1 MiB");
  EXPECT_EQ(format_bytes(-1536), "-1.5 KiB");
}

TEST(TimingTest, FormatTimingHasIPythonLinesAndWorkerLine) {
  Timing t;
  t.wall = 3830ms;
  t.user = 122ms;
  t.sys = nanoseconds(8'270'000);
  t.peak_rss_bytes = 3'565'158;
  t.peak_rss_is_block_peak = true;
  EXPECT_EQ(format_timing(t),
            "CPU times: user 122 ms, sys: 8.27 ms, total: 130 ms\n"
            "Wall time: 3.83 s\n"
            "Workers' CPU (child processes): user 0 ns, sys: 0 ns\n"
            "CPU/wall: 0.03 (effective parallelism)   Peak RSS: 3.4 MiB\n");
}

TEST(TimingTest, FormatTimingSaysWhenPeakIsLifetime) {
  const std::string text = format_timing(timed([] {}));
  EXPECT_NE(text.find("CPU times: user "), std::string::npos);
  EXPECT_NE(text.find("Wall time: "), std::string::npos);
  Timing lifetime;
  lifetime.peak_rss_bytes = 1024;
  EXPECT_NE(format_timing(lifetime).find("Peak RSS: 1 KiB (process lifetime)"), std::string::npos);
}

}  // namespace
}  // namespace crew
