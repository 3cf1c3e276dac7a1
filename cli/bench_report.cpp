// `crew bench`'s table, its Python comparison and its gnuplot PNG.
#include "bench_report.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <crew/timing.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace crew::cli {
namespace {

std::string speedup_text(double x) {
  return x >= 10 ? fmt::format("{:.1f}×", x) : fmt::format("{:.2f}×", x);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
  if (!file) throw std::runtime_error(fmt::format("cannot write {}", path));
}

}  // namespace

std::string seconds_text(double seconds) {
  return format_duration(std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9)));
}

std::string table(const sweep::Sweep& s) {
  std::string out = fmt::format("{:<11} {:>7} {:>4} {:>20}  {:<21} {:<19} {:>10} {:>10} {:>10}\n",
                                "engine", "workers", "runs", "wall mean ± σ", "min … max",
                                "speed-up (95 % CI)", "efficiency", "CPU", "peak RSS");
  bool unknown_spread = false;
  bool noise = false;
  auto row = [&](const sweep::Point& p) {
    const bool known = p.wall.spread_known();
    unknown_spread = unknown_spread || !known;
    // One run says nothing of the spread: "± ?", never "±0.0 %".
    const std::string sigma =
        known ? fmt::format("± {:.1f} %", p.wall_s > 0 ? p.wall.stddev / p.wall_s * 100 : 0.0)
              : std::string("± ?");
    std::string speed = speedup_text(p.speedup);
    if (p.engine != "serial") {
      speed +=
          p.speedup_interval.interval_known()
              ? fmt::format(" ({:.2f}–{:.2f})", *p.speedup_interval.low, *p.speedup_interval.high)
              : std::string(" (?)");
    }
    std::string efficiency = fmt::format("{:.0f} %", p.efficiency * 100);
    if (p.efficiency_is_noise()) {
      efficiency += " noise";
      noise = true;
    }
    out += fmt::format("{:<11} {:>7} {:>4} {:>20}  {:<21} {:<19} {:>10} {:>10} {:>10}\n", p.engine,
                       p.workers, p.wall.runs, seconds_text(p.wall_s) + " " + sigma,
                       seconds_text(p.wall_min_s) + " … " + seconds_text(p.wall_max_s), speed,
                       efficiency, seconds_text(p.cpu_s),
                       format_bytes(static_cast<std::int64_t>(p.peak_rss_bytes)));
  };
  row(s.serial);
  for (const sweep::Point& p : s.points) row(p);
  if (unknown_spread) out += "± ?: one run, so the spread is unknown.\n";
  if (noise) out += "noise: efficiency above 100 % is noise (a slowed baseline), not a finding.\n";
  return out;
}

std::string python_table(const sweep::Sweep& s) {
  if (s.python.empty()) return {};
  std::string out = "\nThe article's Python, same job, same run (one run of each; crew's mean):\n";
  for (const sweep::PythonComparison& c : s.python) {
    const std::string crew = c.crew_engine == "serial"
                                 ? "crew serial"
                                 : fmt::format("crew {} ×{}", c.crew_engine, c.crew_workers);
    out += fmt::format("  {:<26} {:>10}   {:<18} {:>10}   {}\n", c.what, seconds_text(c.wall_s),
                       crew, c.crew_wall_s > 0 ? seconds_text(c.crew_wall_s) : "-",
                       c.crew_wall_s > 0
                           ? fmt::format("crew {} faster", speedup_text(c.crew_speedup()))
                           : "not measured (engine left out)");
  }
  return out;
}

// Draws the plot with gnuplot. Returns an error text, or empty on success.
std::string draw_plot(const sweep::Sweep& s, const sweep::Verdict& verdict,
                      const std::string& png) {
  char path[] = "/tmp/crew-bench-plot-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return "cannot write a temporary gnuplot script";
  ::close(fd);
  write_file(path, sweep::gnuplot_script(s, verdict, png));
  std::vector<std::string> argv_text = {"gnuplot", path};
  std::vector<char*> argv;
  for (std::string& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  std::string error;
  if (spawned != 0) {
    error = fmt::format("--plot needs gnuplot ({}); install gnuplot-nox", std::strerror(spawned));
  } else {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      error = fmt::format("gnuplot failed to draw {}", png);
    }
  }
  ::unlink(path);
  return error;
}

}  // namespace crew::cli
