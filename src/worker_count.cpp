// default_worker_count(): affinity mask ∩ cgroup CPU quota. See include/crew/worker_count.hpp.
#include "crew/worker_count.hpp"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/core.h>

namespace crew {
namespace {

constexpr std::string_view kWhitespace = " \t\r\n";

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(kWhitespace);
  return text.substr(first, last - first + 1);
}

// A whole string_view as a positive int64, else nullopt (no sign, no trailing junk).
std::optional<std::int64_t> parse_positive(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value <= 0) return std::nullopt;
  return value;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const auto end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool has_word(std::string_view comma_list, std::string_view word) {
  const auto words = split(comma_list, ',');
  return std::find(words.begin(), words.end(), word) != words.end();
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() &&
        std::all_of(text.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                    text.begin() + static_cast<std::ptrdiff_t>(i) + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out += static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 +
                               (text[i + 3] - '0'));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return contents;
}

// The directories from `cgroup_path`'s own up to the mount point, deepest first.
std::vector<std::string> directories_up_to_mount(const detail::CgroupMount& mount,
                                                 std::string_view cgroup_path) {
  std::string_view root = mount.root;
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  std::string_view relative;
  if (root == "/") {
    relative = cgroup_path;
  } else if (cgroup_path.starts_with(root) &&
             (cgroup_path.size() == root.size() || cgroup_path[root.size()] == '/')) {
    relative = cgroup_path.substr(root.size());
  }
  // Otherwise the process's cgroup is not visible under this mount (e.g. a container without
  // a cgroup namespace that mounted someone else's subtree): only the mount point is meaningful.

  std::string base = mount.mount_point;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::vector<std::string> dirs{base};
  std::string dir = base == "/" ? "" : base;
  for (std::string_view part : split(relative, '/')) {
    if (part.empty() || part == ".") continue;
    // /proc/self/cgroup never holds "..", and following one would leave the mount.
    if (part == "..") break;
    dir += '/';
    dir += part;
    dirs.push_back(dir);
  }
  std::reverse(dirs.begin(), dirs.end());
  return dirs;
}

template <class ReadLevel>
std::optional<detail::CgroupQuota> smallest_quota(const detail::CgroupMount& mount,
                                                  std::string_view cgroup_path,
                                                  ReadLevel read_level) {
  std::optional<detail::CgroupQuota> best;
  for (const std::string& dir : directories_up_to_mount(mount, cgroup_path)) {
    auto quota = read_level(dir);
    if (quota && (!best || quota->cpus < best->cpus)) best = std::move(quota);
  }
  return best;
}

std::string plural_cpus(double cpus) {
  return fmt::format("{:.3g} CPU{}", cpus, cpus == 1.0 ? "" : "s");
}

// combine_worker_count with the affinity count's origin spelled out, so the hardware_concurrency
// fallback can say so instead of claiming an affinity mask.
WorkerCount combine(std::size_t cpus, std::optional<double> quota_cpus,
                    std::string_view quota_source, std::string_view cpus_origin,
                    std::string_view cpus_short) {
  cpus = std::max<std::size_t>(cpus, 1);
  const std::string cpu_text = fmt::format("{} CPU{}", cpus, cpus == 1 ? "" : "s");
  if (!quota_cpus || !std::isfinite(*quota_cpus) || *quota_cpus <= 0) {
    return {cpus, fmt::format("{} {}; no cgroup CPU limit", cpu_text, cpus_origin)};
  }
  const double quota = *quota_cpus;
  // Compared as doubles first: a huge quota must not be converted to size_t.
  if (std::ceil(quota) >= static_cast<double>(cpus)) {
    return {cpus, fmt::format("{} {} ({} = {} does not limit it further)", cpu_text, cpus_origin,
                              quota_source, plural_cpus(quota))};
  }
  const auto count = std::max<std::size_t>(static_cast<std::size_t>(std::ceil(quota)), 1);
  return {count, fmt::format("{} = {} → {} ({} {})", quota_source, plural_cpus(quota), count,
                             cpus_short, cpus)};
}

struct Affinity {
  std::size_t cpus = 0;
  int error = 0;  // errno of sched_getaffinity, 0 on success
};

Affinity affinity_cpu_count() {
  // The mask may be wider than cpu_set_t's 1024 CPUs: grow until the kernel's mask fits.
  for (int ncpus = CPU_SETSIZE; ncpus <= (1 << 22); ncpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(static_cast<std::size_t>(ncpus));
    if (set == nullptr) return {0, ENOMEM};
    const std::size_t size = CPU_ALLOC_SIZE(static_cast<std::size_t>(ncpus));
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int error = errno;
    const std::size_t count = rc == 0 ? static_cast<std::size_t>(CPU_COUNT_S(size, set)) : 0;
    CPU_FREE(set);
    if (rc == 0) return {count, 0};
    if (error != EINVAL) return {0, error};
  }
  return {0, EINVAL};
}

}  // namespace

namespace detail {

std::optional<double> parse_cgroup_v2_cpu_max(std::string_view contents) {
  const auto fields = split(trim(contents), ' ');
  if (fields.size() != 2) return std::nullopt;
  const auto quota = parse_positive(fields[0]);  // "max" fails here: no limit
  const auto period = parse_positive(fields[1]);
  if (!quota || !period) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> parse_cgroup_v1_quota(std::string_view quota_us, std::string_view period_us) {
  const auto quota = parse_positive(trim(quota_us));  // "-1" fails here: no limit
  const auto period = parse_positive(trim(period_us));
  if (!quota || !period) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::string cgroup_v2_path_from_proc_self_cgroup(std::string_view contents) {
  for (std::string_view line : split(contents, '\n')) {
    if (line.starts_with("0::")) return std::string(trim(line.substr(3)));
  }
  return {};
}

std::string cgroup_v1_path_from_proc_self_cgroup(std::string_view contents,
                                                 std::string_view controller) {
  for (std::string_view line : split(contents, '\n')) {
    // "hierarchy-id:controller-list:path"; the path itself may contain ':'.
    const auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    const auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    if (has_word(line.substr(first + 1, second - first - 1), controller)) {
      return std::string(trim(line.substr(second + 1)));
    }
  }
  return {};
}

CgroupMounts cgroup_mounts_from_mountinfo(std::string_view contents) {
  CgroupMounts mounts;
  for (std::string_view line : split(contents, '\n')) {
    // "id parent major:minor root mount-point options [optional fields...] - fstype source super"
    const auto fields = split(line, ' ');
    const auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 7 || dash == fields.end() || dash - fields.begin() < 6 ||
        fields.end() - dash < 4) {
      continue;
    }
    const std::string_view fstype = *(dash + 1);
    const std::string_view super_options = *(dash + 3);
    CgroupMount mount{unescape_octal(fields[3]), unescape_octal(fields[4])};
    if (fstype == "cgroup2" && !mounts.v2) {
      mounts.v2 = std::move(mount);
    } else if (fstype == "cgroup" && !mounts.v1_cpu && has_word(super_options, "cpu")) {
      mounts.v1_cpu = std::move(mount);
    }
  }
  return mounts;
}

std::optional<CgroupQuota> read_cgroup_v2_quota(const CgroupMount& mount,
                                                std::string_view cgroup_path) {
  return smallest_quota(
      mount, cgroup_path, [](const std::string& dir) -> std::optional<CgroupQuota> {
        const auto contents = read_small_file(dir + "/cpu.max");
        if (!contents) return std::nullopt;
        const auto cpus = parse_cgroup_v2_cpu_max(*contents);
        if (!cpus) return std::nullopt;
        const auto fields = split(trim(*contents), ' ');
        return CgroupQuota{*cpus,
                           fmt::format("cgroup v2 cpu.max {}/{} at {}", fields[0], fields[1], dir)};
      });
}

std::optional<CgroupQuota> read_cgroup_v1_quota(const CgroupMount& mount,
                                                std::string_view cgroup_path) {
  return smallest_quota(
      mount, cgroup_path, [](const std::string& dir) -> std::optional<CgroupQuota> {
        const auto quota = read_small_file(dir + "/cpu.cfs_quota_us");
        const auto period = read_small_file(dir + "/cpu.cfs_period_us");
        if (!quota || !period) return std::nullopt;
        const auto cpus = parse_cgroup_v1_quota(*quota, *period);
        if (!cpus) return std::nullopt;
        return CgroupQuota{
            *cpus, fmt::format("cgroup v1 cpu.cfs_quota_us/cfs_period_us {}/{} at {}", trim(*quota),
                               trim(*period), dir)};
      });
}

WorkerCount combine_worker_count(std::size_t affinity_cpus, std::optional<double> quota_cpus,
                                 std::string_view quota_source) {
  return combine(affinity_cpus, quota_cpus, quota_source, "in this process's affinity mask",
                 "affinity allows");
}

}  // namespace detail

WorkerCount default_worker_count() {
  std::optional<detail::CgroupQuota> quota;
  const auto keep_smaller = [&quota](std::optional<detail::CgroupQuota> candidate) {
    if (candidate && (!quota || candidate->cpus < quota->cpus)) quota = std::move(candidate);
  };

  const std::string proc_cgroup = read_small_file("/proc/self/cgroup").value_or("");
  detail::CgroupMounts mounts;
  if (const auto mountinfo = read_small_file("/proc/self/mountinfo")) {
    mounts = detail::cgroup_mounts_from_mountinfo(*mountinfo);
  } else {
    // No mountinfo (an unusual sandbox): try the places systemd and Docker mount them.
    mounts.v2 = detail::CgroupMount{"/", "/sys/fs/cgroup"};
    mounts.v1_cpu = detail::CgroupMount{"/", "/sys/fs/cgroup/cpu,cpuacct"};
  }
  if (mounts.v2) {
    const std::string path = detail::cgroup_v2_path_from_proc_self_cgroup(proc_cgroup);
    keep_smaller(detail::read_cgroup_v2_quota(*mounts.v2, path.empty() ? "/" : path));
  }
  if (mounts.v1_cpu) {
    const std::string path = detail::cgroup_v1_path_from_proc_self_cgroup(proc_cgroup, "cpu");
    keep_smaller(detail::read_cgroup_v1_quota(*mounts.v1_cpu, path.empty() ? "/" : path));
  }

  const std::optional<double> quota_cpus =
      quota ? std::optional<double>(quota->cpus) : std::nullopt;
  const std::string_view quota_source = quota ? std::string_view(quota->source) : "";

  const Affinity affinity = affinity_cpu_count();
  if (affinity.error == 0) {
    return detail::combine_worker_count(affinity.cpus, quota_cpus, quota_source);
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  const std::string origin = fmt::format(
      "from std::thread::hardware_concurrency() (sched_getaffinity failed: {}{})",
      std::generic_category().message(affinity.error), hardware == 0 ? "; it returned 0" : "");
  return combine(hardware, quota_cpus, quota_source, origin, "hardware_concurrency() says");
}

}  // namespace crew
