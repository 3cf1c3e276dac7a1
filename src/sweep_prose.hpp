// How the sweep's sentences and plot titles name engines and figures, shared by the verdict
// (sweep.cpp) and the plot (sweep_gnuplot.cpp). Internal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace crew::detail {

// The engine as a sentence names it, and as the subject of "Adding … stops paying".
inline std::string engine_prose(std::string_view engine) {
  if (engine == "thread") return "threads";
  if (engine == "process") return "processes";
  if (engine == "event-loop") return "the event loop";
  if (engine == "serial") return "the serial loop";
  return std::string(engine);
}

// Two decimals while they matter ("1.87×"), one from 10 on ("29.7×").
inline std::string format_speedup(double speedup) {
  return speedup < 9.995 ? fmt::format("{:.2f}×", speedup) : fmt::format("{:.1f}×", speedup);
}

inline std::string plural(std::size_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace crew::detail
