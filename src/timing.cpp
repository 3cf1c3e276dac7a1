// Stopwatch and the %%time-style formatting. See include/crew/timing.hpp for what each figure
// means.
#include "crew/timing.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

namespace crew {

namespace detail {

// One live Stopwatch's view of the process's peak RSS. Guarded by PeakRegistry::mu.
struct PeakRssWatch {
  // Highest RSS reached since this watch's start, as far as later resets (by other Stopwatches)
  // erased it from the kernel's high-water mark.
  std::int64_t carried_peak_bytes = 0;
};

}  // namespace detail

namespace {

using std::chrono::nanoseconds;

// The kernel keeps one high-water mark per process; every Stopwatch resets it. So that a reset
// does not erase the peak of a Stopwatch that is still running, the mark is read just before each
// reset and folded into every live watch, all under mu so no reset slips between read and fold.
struct PeakRegistry {
  std::mutex mu;
  // Guarded by mu. Expired entries are pruned at each registration.
  std::vector<std::weak_ptr<detail::PeakRssWatch>> live;
};

PeakRegistry& peak_registry() {
  // Leaked on purpose: a Stopwatch may run in a static destructor after this would be destroyed.
  static PeakRegistry* const registry = new PeakRegistry;
  return *registry;
}

nanoseconds to_ns(const timeval& tv) {
  return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
}

rusage get_rusage(int who) {
  rusage usage{};
  // Cannot fail for RUSAGE_SELF / RUSAGE_CHILDREN with a valid pointer; a zeroed struct would be
  // the harmless answer if it somehow did.
  ::getrusage(who, &usage);
  return usage;
}

// VmHWM from /proc/self/status, in bytes; nullopt when /proc is unavailable or the line is missing.
std::optional<std::int64_t> read_vm_hwm_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  constexpr std::string_view kKey = "VmHWM:";
  while (std::getline(status, line)) {
    if (!line.starts_with(kKey)) continue;
    std::string_view rest(line);
    rest.remove_prefix(kKey.size());
    const auto first = rest.find_first_not_of(" \t");
    if (first == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(first);
    std::int64_t kib = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), kib);
    if (ec != std::errc{} || kib < 0) return std::nullopt;
    // The kernel always reports this line in kB (KiB).
    return kib * 1024;
  }
  return std::nullopt;
}

// Writes "5" to /proc/self/clear_refs: resets VmHWM to the current RSS (Linux ≥ 4.0).
bool reset_peak_rss() {
  const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t written;
  do {
    written = ::write(fd, "5", 1);
  } while (written < 0 && errno == EINTR);
  ::close(fd);
  return written == 1;
}

std::shared_ptr<detail::PeakRssWatch> start_peak_watch() {
  PeakRegistry& registry = peak_registry();
  std::lock_guard lock(registry.mu);
  std::erase_if(registry.live, [](const auto& weak) { return weak.expired(); });
  if (!registry.live.empty()) {
    if (const auto before = read_vm_hwm_bytes()) {
      for (const auto& weak : registry.live) {
        if (const auto watch = weak.lock()) {
          watch->carried_peak_bytes = std::max(watch->carried_peak_bytes, *before);
        }
      }
    }
  }
  if (!reset_peak_rss()) return nullptr;
  auto watch = std::make_shared<detail::PeakRssWatch>();
  registry.live.push_back(watch);
  return watch;
}

// Three significant digits of a positive value, as (digits, decimal exponent): 999'600 →
// ("100", 6). Taken from one correctly rounded conversion, so the unit chosen from the exponent
// and the digits printed can never disagree (IPython's "1e+03 µs").
std::pair<std::string, int> three_significant(double value) {
  const std::string sci = fmt::format("{:.2e}", value);  // "d.dde±XX"
  const auto e = sci.find('e');
  int exponent = 0;
  const char* first = sci.data() + e + 1;
  if (*first == '+') ++first;
  std::from_chars(first, sci.data() + sci.size(), exponent);
  return {std::string{sci[0], sci[2], sci[3]}, exponent};
}

// "ddd" with the decimal point after int_digits digits, trailing fractional zeros dropped.
std::string place_point(const std::string& digits, int int_digits) {
  std::string out = digits.substr(0, static_cast<std::size_t>(int_digits));
  std::string frac = digits.substr(static_cast<std::size_t>(int_digits));
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (!frac.empty()) out += "." + frac;
  return out;
}

}  // namespace

nanoseconds Timing::cpu() const { return user + sys + children_user + children_sys; }

double Timing::parallelism() const {
  if (wall <= nanoseconds::zero()) return 0.0;
  return static_cast<double>(cpu().count()) / static_cast<double>(wall.count());
}

Stopwatch::Stopwatch() : peak_(start_peak_watch()) {
  const rusage self = get_rusage(RUSAGE_SELF);
  const rusage children = get_rusage(RUSAGE_CHILDREN);
  start_user_ = to_ns(self.ru_utime);
  start_sys_ = to_ns(self.ru_stime);
  start_children_user_ = to_ns(children.ru_utime);
  start_children_sys_ = to_ns(children.ru_stime);
  // Read last so the wall time excludes the set-up above.
  start_wall_ = std::chrono::steady_clock::now();
}

Timing Stopwatch::elapsed() const {
  // Read first so the wall time excludes the bookkeeping below.
  const auto now = std::chrono::steady_clock::now();
  const rusage self = get_rusage(RUSAGE_SELF);
  const rusage children = get_rusage(RUSAGE_CHILDREN);

  Timing t;
  t.wall = now - start_wall_;
  t.user = to_ns(self.ru_utime) - start_user_;
  t.sys = to_ns(self.ru_stime) - start_sys_;
  t.children_user = to_ns(children.ru_utime) - start_children_user_;
  t.children_sys = to_ns(children.ru_stime) - start_children_sys_;

  if (peak_) {
    std::lock_guard lock(peak_registry().mu);
    if (const auto hwm = read_vm_hwm_bytes()) {
      t.peak_rss_bytes = std::max(*hwm, peak_->carried_peak_bytes);
      t.peak_rss_is_block_peak = true;
    }
  }
  if (!t.peak_rss_is_block_peak) {
    // ru_maxrss is in KiB on Linux.
    t.peak_rss_bytes = static_cast<std::int64_t>(self.ru_maxrss) * 1024;
  }
  return t;
}

std::string format_duration(nanoseconds d) {
  const std::int64_t count = d.count();
  if (count == 0) return "0 ns";
  // Unsigned so that the magnitude of INT64_MIN is representable.
  const std::uint64_t magnitude = count < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(count)
                                            : static_cast<std::uint64_t>(count);
  const std::string sign = count < 0 ? "-" : "";

  constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
  if (magnitude >= 60 * kNsPerSecond) {
    // IPython's _format_time: whole units, largest first, zero units skipped, stop once less than
    // a second is left (so the seconds are truncated, not rounded).
    struct Part {
      const char* suffix;
      std::uint64_t seconds;
    };
    constexpr Part kParts[] = {{"d", 86'400}, {"h", 3'600}, {"min", 60}, {"s", 1}};
    std::uint64_t left = magnitude / kNsPerSecond;
    std::string out;
    for (const Part& part : kParts) {
      const std::uint64_t value = left / part.seconds;
      if (value > 0) {
        left %= part.seconds;
        if (!out.empty()) out += ' ';
        out += fmt::format("{}{}", value, part.suffix);
      }
      if (left == 0) break;
    }
    return sign + out;
  }

  // ns, µs, ms, s: one unit per three decimal exponents. "\u00b5" is the micro sign IPython uses.
  constexpr const char* kUnits[] = {"ns", "\u00b5s", "ms", "s"};
  const auto [digits, exponent] = three_significant(static_cast<double>(magnitude));
  const int unit = std::min(exponent / 3, 3);
  return fmt::format("{}{} {}", sign, place_point(digits, exponent - 3 * unit + 1), kUnits[unit]);
}

std::string format_bytes(std::int64_t bytes) {
  const std::uint64_t magnitude = bytes < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(bytes)
                                            : static_cast<std::uint64_t>(bytes);
  const std::string sign = bytes < 0 ? "-" : "";
  if (magnitude < 1024) return fmt::format("{}{} B", sign, magnitude);

  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  constexpr int kLastUnit = 6;
  double value = static_cast<double>(magnitude);
  int unit = 0;
  while (unit < kLastUnit && value >= 1024.0) {
    value /= 1024.0;
    ++unit;
  }
  // Three significant digits without an exponent: 1.50, 34.1, 341 (1023.7 rounds to 1024 below).
  const int decimals = value < 10.0 ? 2 : value < 100.0 ? 1 : 0;
  std::string text = fmt::format("{:.{}f}", value, decimals);
  if (text == "1024" && unit < kLastUnit) {
    text = "1";
    ++unit;
  }
  if (text.find('.') != std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  return fmt::format("{}{} {}", sign, text, kUnits[unit]);
}

std::string format_timing(const Timing& t) {
  std::string out;
  out += fmt::format("CPU times: user {}, sys: {}, total: {}\n", format_duration(t.user),
                     format_duration(t.sys), format_duration(t.user + t.sys));
  out += fmt::format("Wall time: {}\n", format_duration(t.wall));
  out += fmt::format("Workers' CPU (child processes): user {}, sys: {}\n",
                     format_duration(t.children_user), format_duration(t.children_sys));
  out += fmt::format("CPU/wall: {:.2f} (effective parallelism)   Peak RSS: {}{}\n", t.parallelism(),
                     format_bytes(t.peak_rss_bytes),
                     t.peak_rss_is_block_peak ? "" : " (process lifetime)");
  return out;
}

}  // namespace crew
