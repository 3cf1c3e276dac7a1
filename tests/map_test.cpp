// crew-test-label: concurrency
// ThreadPool's map family: map, starmap, map_outcomes, imap, imap_unordered.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <forward_list>
#include <limits>
#include <list>
#include <numeric>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "crew/thread_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

std::vector<int> iota_vector(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// A single-pass input range that counts how many items were pulled from it.
class CountingInput {
 public:
  CountingInput(int size, std::atomic<int>& pulled) : size_(size), pulled_(&pulled) {}
  class iterator {
   public:
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const CountingInput* owner, int at) : owner_(owner), at_(at) {}
    int operator*() const { return at_; }
    iterator& operator++() {
      ++at_;
      owner_->pulled_->fetch_add(1);
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return at_ >= owner_->size_; }

   private:
    const CountingInput* owner_ = nullptr;
    int at_ = 0;
  };
  iterator begin() const { return iterator(this, 0); }
  std::default_sentinel_t end() const { return {}; }

 private:
  int size_;
  std::atomic<int>* pulled_;
};
static_assert(std::ranges::input_range<CountingInput>);
static_assert(!std::ranges::forward_range<CountingInput>);

TEST(MapTest, KeepsInputOrderForARandomAccessRange) {
  ThreadPool pool({.workers = 2});
  auto out = pool.map([](int x) { return x * x; }, iota_vector(1000), {.chunksize = 7});
  ASSERT_EQ(out.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
}

TEST(MapTest, KeepsInputOrderForAForwardList) {
  ThreadPool pool({.workers = 2});
  std::forward_list<std::string> words{"a", "bb", "ccc", "dddd"};
  auto lengths = pool.map([](const std::string& s) { return s.size(); }, words, {.chunksize = 1});
  EXPECT_EQ(lengths, (std::vector<std::size_t>{1, 2, 3, 4}));
}

TEST(MapTest, PullsASinglePassInputOfUnknownSize) {
  ThreadPool pool({.workers = 2});
  std::istringstream text("5 4 3 2 1");
  auto out = pool.map([](int x) { return x * 10; }, std::views::istream<int>(text));
  EXPECT_EQ(out, (std::vector<int>{50, 40, 30, 20, 10}));
}

TEST(MapTest, AdaptiveChunksCoverALongInputOfUnknownSize) {
  ThreadPool pool({.workers = 2});
  std::atomic<int> pulled{0};
  auto out = pool.map([](int x) { return x + 1; }, CountingInput(100000, pulled));
  ASSERT_EQ(out.size(), 100000u);
  EXPECT_EQ(out.front(), 1);
  EXPECT_EQ(out.back(), 100000);
}

TEST(MapTest, EmptyInputGivesEmptyResult) {
  ThreadPool pool({.workers = 2});
  EXPECT_TRUE(pool.map([](int x) { return x; }, std::vector<int>{}).empty());
  EXPECT_TRUE(pool.map_outcomes([](int x) { return x; }, std::vector<int>{}).empty());
  int count = 0;
  for (int x : pool.imap([](int x) { return x; }, std::vector<int>{})) count += x + 1;
  EXPECT_EQ(count, 0);
}

TEST(MapTest, VoidFunctionRunsEveryItem) {
  ThreadPool pool({.workers = 2});
  std::atomic<long> sum{0};
  pool.map([&](int x) { sum += x; }, iota_vector(1000));
  EXPECT_EQ(sum.load(), 999L * 1000 / 2);
}

TEST(MapTest, BoolResultsAreNotRacyBits) {
  ThreadPool pool({.workers = 2});
  auto even = pool.map([](int x) { return x % 2 == 0; }, iota_vector(10000), {.chunksize = 1});
  ASSERT_EQ(even.size(), 10000u);
  for (std::size_t i = 0; i < even.size(); ++i) EXPECT_EQ(even[i], i % 2 == 0);
}

TEST(MapTest, StarmapUnpacksTuples) {
  ThreadPool pool({.workers = 2});
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap([](int a, int b) { return a * b; }, pairs), (std::vector<int>{2, 12, 30}));
}

TEST(MapTest, RejectsChunksizeZeroNamingIt) {
  ThreadPool pool({.workers = 1});
  try {
    (void)pool.map([](int x) { return x; }, iota_vector(3), {.chunksize = 0});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("chunksize"), std::string::npos);
  }
  EXPECT_THROW((void)pool.imap([](int x) { return x; }, iota_vector(3), {.window = 0}),
               std::invalid_argument);
}

// Any chunk size works: one past the input, 2^61, the largest size_t (once a wrap-around in the
// chunk count silently mapped nothing), on the bulk and both stream paths.
TEST(MapTest, AnyChunksizeWorksOnEveryPath) {
  ThreadPool pool({.workers = 2});
  const auto ten = iota_vector(10);
  std::vector<int> expected(10);
  std::transform(ten.begin(), ten.end(), expected.begin(), [](int x) { return x + 1; });
  const auto inc = [](int x) { return x + 1; };
  for (std::size_t chunksize :
       {std::size_t{11}, std::size_t{1} << 61, std::size_t{1'000'000'000'000},
        std::numeric_limits<std::size_t>::max()}) {
    const MapOptions options{.chunksize = chunksize};
    EXPECT_EQ(pool.map(inc, ten, options), expected) << chunksize;
    const std::list<int> list(ten.begin(), ten.end());
    EXPECT_EQ(pool.map(inc, list, options), expected) << chunksize;
    std::atomic<int> pulled{0};
    EXPECT_EQ(pool.map(inc, CountingInput(10, pulled), options), expected) << chunksize;
    std::vector<int> streamed;
    for (int r : pool.imap(inc, list, options)) streamed.push_back(r);
    EXPECT_EQ(streamed, expected) << chunksize;
    EXPECT_EQ(pool.map_outcomes(inc, ten, options).size(), 10u) << chunksize;
    int touched = 0;
    pool.map([&touched](int) { ++touched; }, ten, options);  // one chunk: no race
    EXPECT_EQ(touched, 10) << chunksize;
  }
}

TEST(MapTest, ThrowsTheLowestPositionFailureEvenWhenALaterOneFailsFirst) {
  ThreadPool pool({.workers = 2});
  std::atomic<bool> later_failed{false};
  auto fn = [&](int x) {
    if (x == 1) {
      while (!later_failed.load()) std::this_thread::yield();
      throw std::runtime_error("failure at 1");
    }
    if (x == 3) {
      later_failed = true;
      throw std::runtime_error("failure at 3");
    }
    return x;
  };
  try {
    (void)pool.map(fn, iota_vector(8), {.chunksize = 1});
    FAIL() << "no exception";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "failure at 1");
  }
  // The pool stays usable.
  EXPECT_EQ(pool.map([](int x) { return x + 1; }, iota_vector(3)), (std::vector<int>{1, 2, 3}));
}

TEST(MapTest, StopsStartingChunksAfterAFailure) {
  ThreadPool pool({.workers = 1});
  std::atomic<int> ran{0};
  auto fn = [&](int x) {
    ++ran;
    if (x == 0) throw std::runtime_error("first item fails");
    return x;
  };
  EXPECT_THROW((void)pool.map(fn, iota_vector(100), {.chunksize = 1}), std::runtime_error);
  EXPECT_EQ(ran.load(), 1);
}

TEST(MapTest, StreamPathAlsoThrowsTheLowestFailure) {
  ThreadPool pool({.workers = 2});
  std::list<int> items(50);
  std::iota(items.begin(), items.end(), 0);
  try {
    (void)pool.map(
        [](int x) {
          if (x == 20 || x == 30) throw std::runtime_error("bad " + std::to_string(x));
          return x;
        },
        items, {.chunksize = 3});
    FAIL() << "no exception";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "bad 20");
  }
}

TEST(MapTest, MapOutcomesKeepsEveryOtherResult) {
  ThreadPool pool({.workers = 2});
  auto outcomes = pool.map_outcomes(
      [](int x) {
        if (x % 10 == 3) throw std::invalid_argument("no " + std::to_string(x));
        return x * 2;
      },
      iota_vector(100), {.chunksize = 4});
  ASSERT_EQ(outcomes.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    const auto& outcome = outcomes[static_cast<std::size_t>(i)];
    if (i % 10 == 3) {
      EXPECT_FALSE(outcome.has_value());
      EXPECT_EQ(outcome.error_message(), "std::invalid_argument: no " + std::to_string(i));
      EXPECT_THROW((void)outcome.value(), std::invalid_argument);
    } else {
      EXPECT_EQ(outcome.value(), i * 2);
    }
  }
}

TEST(MapTest, MapOutcomesOverAnInputRange) {
  ThreadPool pool({.workers = 2});
  std::istringstream text("1 0 2");
  auto outcomes = pool.map_outcomes(
      [](int x) {
        if (x == 0) throw std::domain_error("zero");
        return 10 / x;
      },
      std::views::istream<int>(text));
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].value(), 10);
  EXPECT_FALSE(outcomes[1].has_value());
  EXPECT_EQ(outcomes[2].value(), 5);
}

TEST(MapTest, ImapYieldsInOrder) {
  ThreadPool pool({.workers = 2});
  std::vector<int> seen;
  for (int x : pool.imap([](int x) { return x * 3; }, iota_vector(500), {.chunksize = 5})) {
    seen.push_back(x);
  }
  ASSERT_EQ(seen.size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], 3 * i);
}

TEST(MapTest, ImapYieldsResultsUpToTheFailureThenThrows) {
  ThreadPool pool({.workers = 2});
  std::vector<int> seen;
  auto fn = [](int x) {
    if (x == 5) throw std::runtime_error("five");
    return x;
  };
  try {
    for (int x : pool.imap(fn, iota_vector(10), {.chunksize = 1})) seen.push_back(x);
    FAIL() << "no exception";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "five");
  }
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(MapTest, ImapUnorderedYieldsEveryOtherItemThenThrows) {
  ThreadPool pool({.workers = 2});
  std::vector<int> seen;
  auto fn = [](int x) {
    if (x == 5 || x == 7) throw std::runtime_error("bad " + std::to_string(x));
    return x;
  };
  try {
    for (int x : pool.imap_unordered(fn, iota_vector(20), {.chunksize = 2})) seen.push_back(x);
    FAIL() << "no exception";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "bad 5");
  }
  std::sort(seen.begin(), seen.end());
  std::vector<int> expected;
  for (int i = 0; i < 20; ++i) {
    if (i != 5 && i != 7) expected.push_back(i);
  }
  EXPECT_EQ(seen, expected);
}

TEST(MapTest, ImapKeepsAtMostTheWindowOfInputPulledAhead) {
  ThreadPool pool({.workers = 2});
  std::atomic<int> pulled{0};
  int consumed = 0;
  int worst_lead = 0;
  for (int x : pool.imap([](int x) { return x; }, CountingInput(1000, pulled),
                         {.chunksize = 1, .window = 4})) {
    EXPECT_EQ(x, consumed);
    ++consumed;
    worst_lead = std::max(worst_lead, pulled.load() - consumed);
  }
  EXPECT_EQ(consumed, 1000);
  EXPECT_LE(worst_lead, 4);
}

TEST(MapTest, LeavingAnImapLoopEarlyCancelsTheRest) {
  ThreadPool pool({.workers = 2});
  std::atomic<int> ran{0};
  {
    std::vector<int> input = iota_vector(100000);
    int taken = 0;
    for (int x : pool.imap(
             [&](int x) {
               ++ran;
               return x;
             },
             input, {.chunksize = 10})) {
      (void)x;
      if (++taken == 3) break;
    }
  }  // `input` is gone: no chunk may still read it (ASan/TSan would see it)
  EXPECT_LT(ran.load(), 100000);
  pool.shutdown();
}

TEST(MapTest, ImapOwnsAnRvalueInput) {
  ThreadPool pool({.workers = 2});
  long sum = 0;
  for (int x : pool.imap([](int x) { return x * 2; }, iota_vector(1000))) sum += x;
  EXPECT_EQ(sum, 999L * 1000);
}

TEST(MapTest, StopTokenCancelsTheMap) {
  ThreadPool pool({.workers = 2});
  std::stop_source stop;
  auto fn = [&](int x) {
    if (x == 10) stop.request_stop();
    return x;
  };
  EXPECT_THROW((void)pool.map(fn, iota_vector(100000), {.chunksize = 1, .stop = stop.get_token()}),
               Cancelled);
  std::stop_source stop2;
  EXPECT_THROW(
      {
        for (int x : pool.imap(
                 [&](int x) {
                   if (x == 10) stop2.request_stop();
                   return x;
                 },
                 iota_vector(100000), {.chunksize = 1, .stop = stop2.get_token()})) {
          (void)x;
        }
      },
      Cancelled);
}

TEST(MapTest, ProgressReportsEveryItemInOrderOfCompletion) {
  ThreadPool pool({.workers = 2});
  std::vector<std::pair<std::size_t, std::size_t>> reports;  // written under the hook's lock
  (void)pool.map([](int x) { return x; }, iota_vector(1000),
                 {.chunksize = 10, .on_progress = [&](std::size_t done, std::size_t total) {
                    reports.emplace_back(done, total);
                  }});
  ASSERT_EQ(reports.size(), 100u);
  EXPECT_EQ(reports.back(), (std::pair<std::size_t, std::size_t>{1000, 1000}));
  EXPECT_TRUE(std::is_sorted(reports.begin(), reports.end()));
}

TEST(MapTest, SeveralThreadsMapOnOnePoolAtOnce) {
  ThreadPool pool({.workers = 2});
  std::vector<std::thread> threads;
  std::vector<long> sums(4);
  for (std::size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto out = pool.map([t](int x) { return static_cast<long>(x) * static_cast<long>(t + 1); },
                          iota_vector(10000), {.chunksize = 64});
      sums[t] = std::accumulate(out.begin(), out.end(), 0L);
      for (long x : pool.imap([](int x) { return static_cast<long>(x); }, iota_vector(1000))) {
        sums[t] += x;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (std::size_t t = 0; t < 4; ++t) {
    EXPECT_EQ(sums[t], static_cast<long>(t + 1) * (9999L * 10000 / 2) + 999L * 1000 / 2);
  }
}

TEST(MapTest, AutoChunksizeGivesManyChunksPerWorker) {
  EXPECT_EQ(detail::auto_chunksize(0, 2), 1u);
  EXPECT_EQ(detail::auto_chunksize(100, 2), 1u);
  EXPECT_EQ(detail::auto_chunksize(1'000'000, 2), 7813u);  // 128 chunks
  EXPECT_EQ(detail::auto_chunksize(100'000'000, 2), kMaxAutoChunksize);
  EXPECT_EQ(detail::auto_chunksize(1'000'000, 16), 977u);
}

}  // namespace
}  // namespace crew
