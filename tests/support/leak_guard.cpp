#include "support/leak_guard.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace crew::testing {

std::size_t count_threads() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

std::size_t count_children() {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream children(entry.path() / "children");
    long pid = 0;
    while (children >> pid) ++count;
  }
  return count;
}

std::size_t settle_thread_count(std::size_t expected) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::size_t now = count_threads();
  while (now > expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    now = count_threads();
  }
  return now;
}

namespace {

class LeakGuard : public ::testing::EmptyTestEventListener {
 public:
  void OnTestProgramStart(const ::testing::UnitTest&) override {
    // ThreadSanitizer starts a background thread with the first thread a program creates; start
    // one here so that thread is part of every test's baseline, not counted as a leak.
    std::thread([] {}).join();
  }
  void OnTestStart(const ::testing::TestInfo&) override {
    threads_at_start_ = count_threads();
    children_at_start_ = count_children();
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const std::size_t threads = settle_thread_count(threads_at_start_);
    const std::size_t children = count_children();
    // A listener cannot fail the test that just ended; print and record for OnTestProgramEnd.
    if (threads > threads_at_start_ || children > children_at_start_) {
      std::ostringstream text;
      text << info.test_suite_name() << "." << info.name() << " left "
           << (threads - threads_at_start_) << " thread(s) and " << (children - children_at_start_)
           << " child process(es) behind";
      leaks_.push_back(text.str());
      std::fprintf(stderr, "[ LEAK     ] %s\n", leaks_.back().c_str());
    }
  }
  void OnTestProgramEnd(const ::testing::UnitTest&) override {
    if (!leaks_.empty()) {
      std::fprintf(stderr, "leak guard: %zu test(s) left threads or processes behind\n",
                   leaks_.size());
      std::fflush(stderr);
      std::_Exit(1);
    }
  }

 private:
  std::size_t threads_at_start_ = 0;
  std::size_t children_at_start_ = 0;
  std::vector<std::string> leaks_;
};

}  // namespace

bool install_leak_guard() {
  static const bool installed = [] {
    ::testing::UnitTest::GetInstance()->listeners().Append(new LeakGuard);
    return true;
  }();
  return installed;
}

}  // namespace crew::testing
