#include "progress_bar.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace crew::cli {
namespace {

constexpr int kBarWidth = 30;

std::string eta_text(double seconds) {
  if (seconds < 1) return "ETA <1 s";
  const auto whole = static_cast<long long>(std::llround(seconds));
  if (whole < 60) return fmt::format("ETA {} s", whole);
  if (whole < 3600) return fmt::format("ETA {}min {}s", whole / 60, whole % 60);
  return fmt::format("ETA {}h {}min", whole / 3600, whole % 3600 / 60);
}

// Items per second: three significant digits below 1,000 ("0.5", "16.1"), short_count above.
std::string rate_text(double rate) {
  if (rate < 999.5) return fmt::format("{:.3g}", rate);
  return short_count(static_cast<std::size_t>(rate));
}

}  // namespace

std::string short_count(std::size_t n) {
  static constexpr std::string_view kSuffixes[] = {"", "k", "M", "G", "T", "P", "E"};
  auto value = static_cast<double>(n);
  std::size_t unit = 0;
  while (value >= 999.5 && unit + 1 < std::size(kSuffixes)) {
    value /= 1000;
    ++unit;
  }
  if (unit == 0) return fmt::format("{}", n);
  // Three significant digits, trailing zeros dropped: 4.50 → "4.5", 10.0 → "10".
  return fmt::format("{:.3g}{}", value, kSuffixes[unit]);
}

ProgressBar::ProgressBar(bool enabled, std::string unit)
    : enabled_(enabled), unit_(std::move(unit)), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { finish(); }

bool ProgressBar::stderr_is_terminal() {
  if (isatty(STDERR_FILENO) == 0) return false;
  const char* term = std::getenv("TERM");
  return term == nullptr || std::string_view(term) != "dumb";
}

void ProgressBar::update(std::size_t done, std::size_t total) noexcept {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  if (finished_ || now - start_ < kDelay || (drawn_ && now - last_draw_ < kInterval)) return;
  try {
    std::string line;
    if (total == 0) {
      line = fmt::format("{} {}", short_count(done), unit_);
    } else {
      const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
      const int filled = static_cast<int>(fraction * kBarWidth);
      std::string bar(static_cast<std::size_t>(filled), '=');
      if (filled < kBarWidth) {
        bar += '>';
        bar.append(static_cast<std::size_t>(kBarWidth - filled - 1), ' ');
      }
      const double elapsed = std::chrono::duration<double>(now - start_).count();
      const std::string eta =
          done == 0 ? std::string("ETA ?")
                    : eta_text(elapsed * static_cast<double>(total - std::min(done, total)) /
                               static_cast<double>(done));
      const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
      line = fmt::format("[{}] {:3.0f}% {}/{} {}, {}/s, {}", bar, fraction * 100, short_count(done),
                         short_count(total), unit_, rate_text(rate), eta);
    }
    // \r back to the line's start, \033[K erases what a longer previous line left behind.
    fmt::print(stderr, "\r{}\033[K", line);
    std::fflush(stderr);
    drawn_ = true;
    last_draw_ = now;
  } catch (...) {
    // A progress bar that cannot be drawn (out of memory, closed stderr) must not stop the run.
    finished_ = true;
  }
}

void ProgressBar::finish() noexcept {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
}

}  // namespace crew::cli
