// The sweep as a self-contained gnuplot script: speed-up against workers with error bars.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "crew/sweep.hpp"
#include "sweep_prose.hpp"

namespace crew::sweep {
namespace {

using detail::engine_prose;
using detail::format_speedup;
using detail::plural;

// A gnuplot single-quoted string takes everything literally but the quote itself, written twice.
std::string gnuplot_single_quoted(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// A gnuplot double-quoted string reads backslash escapes; a raw line break would end the
// command, so '\n' goes in as the escape (a line break in the text) and '\r' as a space.
std::string gnuplot_double_quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\r' ? ' ' : c;
  }
  return out + "\"";
}

std::string one_line(std::string text) {
  std::ranges::replace(text, '\n', ' ');
  return text;
}

// A datablock name is an identifier: "event-loop" becomes $event_loop.
std::string datablock_name(std::string_view engine) {
  std::string name = "$";
  for (char c : engine) {
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    name += word ? c : '_';
  }
  return name;
}

std::string legend_name(std::string_view engine) {
  if (engine == "event-loop") return "event loop";
  return engine_prose(engine);
}

}  // namespace

std::string gnuplot_script(const Sweep& sweep, const Verdict& verdict, std::string_view png_path) {
  // Engines in first-seen order, each with its points by increasing workers.
  std::vector<std::pair<std::string, std::vector<const Point*>>> curves;
  std::size_t max_workers = 1;
  double max_speedup = 1;
  for (const Point& p : sweep.points) {
    auto it = std::ranges::find(curves, p.engine, &decltype(curves)::value_type::first);
    if (it == curves.end()) it = curves.insert(curves.end(), {p.engine, {}});
    it->second.push_back(&p);
    max_workers = std::max(max_workers, p.workers);
    const double top = p.speedup_interval.high.value_or(p.speedup);
    if (std::isfinite(top)) max_speedup = std::max(max_speedup, top);
  }
  const std::size_t cores = std::max<std::size_t>(sweep.cores, 1);

  std::string verdict_text = verdict.engine == "serial" ? std::string("stay serial")
                             : !verdict.conclusive
                                 ? std::string("inconclusive")
                                 : fmt::format("{}, {} ({})", legend_name(verdict.engine),
                                               plural(verdict.workers, "worker", "workers"),
                                               format_speedup(verdict.speedup));
  if (sweep.interrupted) verdict_text += ", interrupted";

  std::string s;
  s += "# Written by crew bench; run with: gnuplot <this file>\n";
  // gnuplot stops at an unknown terminal, so ask it which ones it has.
  s += "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
       "  set terminal pngcairo size 900,600\n"
       "} else {\n"
       "  set terminal png size 900,600\n"
       "}\n";
  s += "set encoding utf8\n";
  s += fmt::format("set output {}\n", gnuplot_single_quoted(png_path));
  // Two lines: the job, then the verdict. "\n" inside a double-quoted gnuplot string is a break.
  s += fmt::format(
      "set title {} noenhanced\n",
      gnuplot_double_quoted(fmt::format("crew bench {}: {}\nverdict: {}", one_line(sweep.job),
                                        one_line(sweep.description), verdict_text)));
  // Room above the plot for the cores label, which would otherwise sit on the legend.
  s += "set tmargin 6\n";
  s += "set xlabel \"workers\"\n";
  s += "set ylabel \"speed-up over serial (bars: 95 % interval)\"\n";
  s += "set logscale x 2\n";
  // Room on the right of the last point and of the cores marker, so neither sits on the border.
  s += fmt::format("set xrange [0.8:{}]\n",
                   static_cast<double>(std::max(max_workers, cores)) * 1.25);
  // An IO-bound ideal runs to the largest worker count and would flatten every measured curve;
  // the range follows what was measured and lets the ideal leave through the top.
  const double ideal_top =
      verdict.cpu_bound ? static_cast<double>(std::min(cores, max_workers)) : 0;
  s += fmt::format("set yrange [0:{}]\n", std::max(max_speedup, ideal_top) * 1.3);
  // Opaque: the ideal line starts in the top-left corner too.
  s += "set key top left opaque box noenhanced\n";
  s += "set grid\n";
  s += fmt::format("set arrow from {0}, graph 0 to {0}, graph 1 nohead dt 2\n", cores);
  s += fmt::format("set label {} at {}, graph 1 center offset 0,0.7\n",
                   gnuplot_double_quoted(plural(cores, "core", "cores")), cores);

  for (auto& [engine, points] : curves) {
    std::ranges::stable_sort(points, {}, &Point::workers);
    s += fmt::format("{} << EOD\n", datablock_name(engine));
    // x, speed-up and its 95 % interval (no bar where the spread is unknown).
    for (const Point* p : points) {
      s += fmt::format("{} {:.6f} {:.6f} {:.6f}\n", p->workers, p->speedup,
                       p->speedup_interval.low.value_or(p->speedup),
                       p->speedup_interval.high.value_or(p->speedup));
    }
    s += "EOD\n";
  }
  // The ideal at every measured worker count (and at the cores, where a CPU-bound one bends).
  std::vector<std::size_t> ideal_x = {1, cores};
  for (const Point& p : sweep.points) ideal_x.push_back(p.workers);
  std::ranges::sort(ideal_x);
  const auto [first, last] = std::ranges::unique(ideal_x);
  ideal_x.erase(first, last);
  s += "$ideal << EOD\n";
  for (std::size_t w : ideal_x) {
    if (w > std::max(max_workers, cores)) continue;
    s += fmt::format("{} {}\n", w, verdict.cpu_bound ? std::min(w, cores) : w);
  }
  s += "EOD\n";

  s += "plot ";
  for (const auto& [engine, points] : curves) {
    s += fmt::format("{} using 1:2:3:4 with yerrorlines lw 2 pt 7 title {}, \\\n     ",
                     datablock_name(engine), gnuplot_double_quoted(legend_name(engine)));
  }
  s += fmt::format("$ideal using 1:2 with lines dt 3 lc rgb \"gray40\" title {}, \\\n     ",
                   gnuplot_double_quoted(verdict.cpu_bound ? "ideal (capped at cores)" : "ideal"));
  s += "1 with lines dt 4 lc rgb \"gray60\" title \"serial\"\n";
  return s;
}

}  // namespace crew::sweep
