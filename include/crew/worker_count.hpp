// How many workers a pool gets when the caller does not say: the CPUs this process may actually
// use, not the CPUs the machine has. In a container limited to 1.5 CPUs on a 64-core host,
// std::thread::hardware_concurrency() says 64; crew says 2.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace crew {

// A worker count and, in words, why: the CLI prints both.
struct WorkerCount {
  std::size_t count = 1;
  // e.g. "2 CPUs in this process's affinity mask; no cgroup CPU limit", or
  // "cgroup v2 cpu.max 150000/100000 at /sys/fs/cgroup/x = 1.5 CPUs → 2 (affinity allows 8)".
  std::string reason;
};

// min(CPUs in the affinity mask, ceil(cgroup CPU quota)), at least 1.
//
// Affinity: sched_getaffinity of the calling thread (taskset, cpuset cgroups and numactl all show
// here); only if that call fails, std::thread::hardware_concurrency(), and the reason says so.
// Quota: cgroup v2 cpu.max and cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us of this process's
// cgroup and of every ancestor up to the mount's root (a parent's limit binds its children),
// mounts found through /proc/self/mountinfo; the smallest wins. A file that cannot be read or
// parsed imposes no limit. Quotas are rounded up: 1.5 CPUs of quota keep 2 workers busy.
//
// Blocks: reads a handful of small /proc and /sys files; not cached, since affinity and limits can
// change while a process runs. Throws: std::bad_alloc only. Thread safety: safe.
[[nodiscard]] WorkerCount default_worker_count();

namespace detail {

// The building blocks of default_worker_count(), public for tests.

// cgroup v2 cpu.max ("$MAX $PERIOD"): "200000 100000" → 2.0; "max 100000" (no limit) → nullopt;
// anything malformed, or a quota or period ≤ 0 → nullopt. Surrounding whitespace is ignored.
[[nodiscard]] std::optional<double> parse_cgroup_v2_cpu_max(std::string_view contents);

// cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us contents: "150000", "100000" → 1.5;
// a quota of "-1" (no limit), anything malformed, or a value ≤ 0 → nullopt.
[[nodiscard]] std::optional<double> parse_cgroup_v1_quota(std::string_view quota_us,
                                                          std::string_view period_us);

// The path of the "0::" line of /proc/self/cgroup ("0::/user.slice/x" → "/user.slice/x"), or ""
// when there is none (a pure cgroup v1 system).
[[nodiscard]] std::string cgroup_v2_path_from_proc_self_cgroup(std::string_view contents);

// The path of the /proc/self/cgroup line whose controller list holds `controller` as a whole
// word ("4:cpu,cpuacct:/docker/ab" → "/docker/ab" for "cpu"; "2:cpuacct:/x" does not match
// "cpu"), or "" when there is none.
[[nodiscard]] std::string cgroup_v1_path_from_proc_self_cgroup(std::string_view contents,
                                                               std::string_view controller);

// A cgroup filesystem as mounted: the cgroup shown at mount_point is `root` (not "/" when a
// container sees only its own subtree without a cgroup namespace).
struct CgroupMount {
  std::string root;
  std::string mount_point;
};

struct CgroupMounts {
  std::optional<CgroupMount> v2;      // fstype cgroup2
  std::optional<CgroupMount> v1_cpu;  // fstype cgroup whose super options hold "cpu"
};

// Finds the cgroup mounts in /proc/self/mountinfo contents (octal escapes such as \040 decoded).
[[nodiscard]] CgroupMounts cgroup_mounts_from_mountinfo(std::string_view contents);

// A CPU limit and where it came from, e.g. {1.5, "cgroup v2 cpu.max 150000/100000 at
// /sys/fs/cgroup/x"}.
struct CgroupQuota {
  double cpus = 0;
  std::string source;
};

// The smallest quota on the way from `cgroup_path` (as in /proc/self/cgroup) up to the mount's
// root; nullopt when no level has one. When cgroup_path is not under mount.root, only the mount
// point itself is read. Blocks: reads files. Throws: std::bad_alloc only.
[[nodiscard]] std::optional<CgroupQuota> read_cgroup_v2_quota(const CgroupMount& mount,
                                                              std::string_view cgroup_path);
[[nodiscard]] std::optional<CgroupQuota> read_cgroup_v1_quota(const CgroupMount& mount,
                                                              std::string_view cgroup_path);

// min(affinity_cpus, ceil(quota_cpus)), at least 1, with the reason in words. affinity_cpus 0
// counts as 1; a quota that is not finite and > 0 counts as none. quota_source names the quota in
// the reason ("cgroup v2 cpu.max 150000/100000 at /sys/fs/cgroup/x").
[[nodiscard]] WorkerCount combine_worker_count(std::size_t affinity_cpus,
                                               std::optional<double> quota_cpus,
                                               std::string_view quota_source);

}  // namespace detail
}  // namespace crew
