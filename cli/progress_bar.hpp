// A one-line progress bar on stderr for long runs:
//   [=============>                ]  45% 4.5M/10M numbers, 1.5M/s, ETA 3 s
// Drawn only when stderr is a terminal and the run has lasted long enough to be worth watching;
// redrawn at most ten times a second, so it stays cheap when fed from MapOptions::on_progress.
// It fits the terminal's width (the bar shrinks first, then the figures are cut), so it never
// wraps into rows that "\r" cannot erase.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

namespace crew::cli {

class ProgressBar {
 public:
  // enabled = false makes every call a no-op (stderr is a file, a pipe, or JSON mode). unit names
  // what is counted ("numbers").
  ProgressBar(bool enabled, std::string unit);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // true when stderr is a terminal (isatty) whose TERM is not "dumb".
  [[nodiscard]] static bool stderr_is_terminal();

  // Records progress: `done` of `total` items (total 0 = unknown). Draws when the run is older than
  // kDelay and the last drawing is older than kInterval. Throws: nothing (a failed write is
  // dropped). Thread safety: may be called from any thread, concurrently with finish().
  void update(std::size_t done, std::size_t total) noexcept;

  // Erases the bar, if one was drawn, so that what follows starts on a clean line. Idempotent;
  // later update() calls draw nothing. Thread safety: as update().
  void finish() noexcept;

  static constexpr std::chrono::milliseconds kDelay{500};
  static constexpr std::chrono::milliseconds kInterval{100};

 private:
  const bool enabled_;
  const std::string unit_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_draw_{};  // guarded by mu_
  bool drawn_ = false;                                 // guarded by mu_
  bool finished_ = false;                              // guarded by mu_
};

// The columns of the terminal on stderr (TIOCGWINSZ), else $COLUMNS, else 80.
[[nodiscard]] int terminal_columns();

// The progress line for a terminal `columns` wide: "[=====>    ] " + figures, the bar narrowed to
// fit (and left out below 10 columns of bar), the figures cut last; always shorter than `columns`,
// so it never wraps (a wrapped line leaves a stale row that "\r" cannot reach).
[[nodiscard]] std::string fit_progress_line(int columns, double fraction,
                                            const std::string& figures);

// A count in three significant digits with an SI suffix, as the bar prints it: 950 → "950",
// 4'500 → "4.5k", 4'500'000 → "4.5M", 10'000'000 → "10M", 1e10 → "10G".
[[nodiscard]] std::string short_count(std::size_t n);

}  // namespace crew::cli
