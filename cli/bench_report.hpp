// What `crew bench` prints of a measured sweep: the table (mean ± σ, min … max, the speed-up's
// 95 % interval, efficiency with noise flagged), the article's Python beside crew, the warnings,
// and the gnuplot PNG.
#pragma once

#include <crew/sweep.hpp>

#include <string>

namespace crew::cli {

// 0.148 → "148 ms".
[[nodiscard]] std::string seconds_text(double seconds);

// The table of a sweep, serial first, one row per point, with a line under it when a point's
// spread is unknown (one run) or its efficiency is noise.
[[nodiscard]] std::string table(const sweep::Sweep& s);

// "The article's Python, same job, same run:" and one row per comparison; empty without any.
[[nodiscard]] std::string python_table(const sweep::Sweep& s);

// Draws the plot with gnuplot into `png`. Returns an error text, or empty on success.
[[nodiscard]] std::string draw_plot(const sweep::Sweep& s, const sweep::Verdict& verdict,
                                    const std::string& png);

}  // namespace crew::cli
