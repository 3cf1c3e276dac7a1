#include "progress_bar.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace crew::cli {
namespace {

constexpr int kBarWidth = 30;
// Narrower than this, the bar itself goes and the figures stay.
constexpr int kMinBarWidth = 10;
constexpr int kDefaultColumns = 80;

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

int terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  // A terminal that reports no size (a bare pseudo-terminal, some CI runners): what the shell
  // says, as other programs read it.
  if (const char* columns = std::getenv("COLUMNS"); columns != nullptr) {
    char* end = nullptr;
    const long value = std::strtol(columns, &end, 10);
    if (end != columns && *end == '\0' && value > 0 && value < 10'000) {
      return static_cast<int>(value);
    }
  }
  return kDefaultColumns;
}

std::string fit_progress_line(int columns, double fraction, const std::string& figures) {
  // One column short of the width: writing the last column leaves some terminals about to wrap,
  // and the next "\r" would then land on a new row and leave this one behind.
  const int room = std::max(columns - 1, 0);
  const auto figures_width = static_cast<int>(figures.size());
  const int bar_width = std::min(kBarWidth, room - figures_width - 3);  // "[" "] " around it
  if (bar_width >= kMinBarWidth) {
    const int filled = static_cast<int>(std::clamp(fraction, 0.0, 1.0) * bar_width);
    std::string bar(static_cast<std::size_t>(filled), '=');
    if (filled < bar_width) {
      bar += '>';
      bar.append(static_cast<std::size_t>(bar_width - filled - 1), ' ');
    }
    return fmt::format("[{}] {}", bar, figures);
  }
  // The figures are ASCII, so a byte is a column.
  return figures.substr(0, static_cast<std::size_t>(room));
}

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
    const int columns = terminal_columns();
    if (total == 0) {
      // No total, no bar: the count alone, cut to the width.
      line = fmt::format("{} {}", short_count(done), unit_);
      line.resize(std::min(line.size(), static_cast<std::size_t>(std::max(columns - 1, 0))));
    } else {
      const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
      const double elapsed = std::chrono::duration<double>(now - start_).count();
      const std::string eta =
          done == 0 ? std::string("ETA ?")
                    : eta_text(elapsed * static_cast<double>(total - std::min(done, total)) /
                               static_cast<double>(done));
      const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
      line = fit_progress_line(
          columns, fraction,
          fmt::format("{:3.0f}% {}/{} {}, {}/s, {}", fraction * 100, short_count(done),
                      short_count(total), unit_, rate_text(rate), eta));
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
