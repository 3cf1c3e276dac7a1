// Tests for crew::default_worker_count and the cgroup parsing behind it.
#include "crew/worker_count.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

namespace crew {
namespace {

using detail::CgroupMount;

TEST(WorkerCountTest, ParsesCgroupV2CpuMax) {
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("200000 100000"), 2.0);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("150000 100000\n"), 1.5);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("max 100000"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max(""), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("garbage"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("100000"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("100000 0"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("-5 100000"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("1x 100000"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v2_cpu_max("100000 100000 7"), std::nullopt);
}

TEST(WorkerCountTest, ParsesCgroupV1Quota) {
  EXPECT_EQ(detail::parse_cgroup_v1_quota("150000\n", "100000\n"), 1.5);
  EXPECT_EQ(detail::parse_cgroup_v1_quota("50000", "100000"), 0.5);
  EXPECT_EQ(detail::parse_cgroup_v1_quota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v1_quota("100000", "0"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v1_quota("abc", "100000"), std::nullopt);
  EXPECT_EQ(detail::parse_cgroup_v1_quota("", ""), std::nullopt);
}

TEST(WorkerCountTest, FindsCgroupV2PathInProcSelfCgroup) {
  EXPECT_EQ(detail::cgroup_v2_path_from_proc_self_cgroup("0::/user.slice/x\n"), "/user.slice/x");
  EXPECT_EQ(detail::cgroup_v2_path_from_proc_self_cgroup("0::/\n"), "/");
  EXPECT_EQ(detail::cgroup_v2_path_from_proc_self_cgroup(
                "12:cpu,cpuacct:/docker/ab\n1:name=systemd:/x\n0::/docker/ab\n"),
            "/docker/ab");
  EXPECT_EQ(detail::cgroup_v2_path_from_proc_self_cgroup("4:cpu,cpuacct:/docker/ab\n"), "");
  EXPECT_EQ(detail::cgroup_v2_path_from_proc_self_cgroup(""), "");
}

TEST(WorkerCountTest, FindsCgroupV1CpuPathInProcSelfCgroup) {
  const std::string contents = "2:cpuacct:/wrong\n4:cpu,cpuacct:/docker/ab\n0::/\n";
  EXPECT_EQ(detail::cgroup_v1_path_from_proc_self_cgroup(contents, "cpu"), "/docker/ab");
  EXPECT_EQ(detail::cgroup_v1_path_from_proc_self_cgroup("1:cpu:/a:b\n", "cpu"), "/a:b");
  EXPECT_EQ(detail::cgroup_v1_path_from_proc_self_cgroup("2:cpuacct:/x\n", "cpu"), "");
}

TEST(WorkerCountTest, FindsCgroupMountsInMountinfo) {
  const std::string mountinfo =
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "31 25 0:27 /docker/ab /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpuacct,cpu\n"
      "32 25 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n";
  const detail::CgroupMounts mounts = detail::cgroup_mounts_from_mountinfo(mountinfo);
  ASSERT_TRUE(mounts.v2.has_value());
  EXPECT_EQ(mounts.v2->root, "/");
  EXPECT_EQ(mounts.v2->mount_point, "/sys/fs/cgroup/unified");
  ASSERT_TRUE(mounts.v1_cpu.has_value());
  EXPECT_EQ(mounts.v1_cpu->root, "/docker/ab");
  EXPECT_EQ(mounts.v1_cpu->mount_point, "/sys/fs/cgroup/cpu x");

  const detail::CgroupMounts none = detail::cgroup_mounts_from_mountinfo(
      "32 25 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup c rw,cpuacct\n");
  EXPECT_FALSE(none.v2.has_value());
  EXPECT_FALSE(none.v1_cpu.has_value());
}

TEST(WorkerCountTest, QuotaCombinesWithAffinity) {
  const WorkerCount limited =
      detail::combine_worker_count(8, 1.5, "cgroup v2 cpu.max 150000/100000");
  EXPECT_EQ(limited.count, 2u);
  EXPECT_EQ(limited.reason, "cgroup v2 cpu.max 150000/100000 = 1.5 CPUs → 2 (affinity allows 8)");

  EXPECT_EQ(detail::combine_worker_count(8, 0.3, "q").count, 1u);
  EXPECT_EQ(detail::combine_worker_count(8, 2.0, "q").count, 2u);
  EXPECT_EQ(detail::combine_worker_count(2, 4.0, "q").count, 2u);
  EXPECT_EQ(detail::combine_worker_count(2, 1e300, "q").count, 2u);
}

TEST(WorkerCountTest, NoQuotaMeansAffinity) {
  const WorkerCount count = detail::combine_worker_count(2, std::nullopt, "");
  EXPECT_EQ(count.count, 2u);
  EXPECT_EQ(count.reason, "2 CPUs in this process's affinity mask; no cgroup CPU limit");
  EXPECT_EQ(detail::combine_worker_count(1, std::nullopt, "").reason,
            "1 CPU in this process's affinity mask; no cgroup CPU limit");
}

TEST(WorkerCountTest, NeverZeroAndIgnoresNonsenseQuota) {
  EXPECT_EQ(detail::combine_worker_count(0, std::nullopt, "").count, 1u);
  EXPECT_EQ(detail::combine_worker_count(4, 0.0, "q").count, 4u);
  EXPECT_EQ(detail::combine_worker_count(4, -1.0, "q").count, 4u);
  EXPECT_EQ(detail::combine_worker_count(4, std::numeric_limits<double>::quiet_NaN(), "q").count,
            4u);
}

TEST(WorkerCountTest, QuotaThatDoesNotBindIsStillExplained) {
  const WorkerCount count = detail::combine_worker_count(2, 4.0, "cgroup v2 cpu.max 400000/100000");
  EXPECT_EQ(count.count, 2u);
  EXPECT_NE(count.reason.find("affinity mask"), std::string::npos);
  EXPECT_NE(count.reason.find("400000/100000"), std::string::npos);
}

// A fake cgroup tree in a temporary directory, removed at the end.
class CgroupTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "crew-cgroup-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void write(const std::string& relative, const std::string& contents) {
    const std::filesystem::path path = root_ / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << contents;
  }

  std::filesystem::path root_;
};

TEST_F(CgroupTreeTest, V2TakesSmallestQuotaOnTheWayUp) {
  write("cpu.max", "max 100000\n");
  write("a/cpu.max", "150000 100000\n");
  write("a/b/cpu.max", "400000 100000\n");
  write("a/b/c/cpu.max", "max 100000\n");
  const auto quota = detail::read_cgroup_v2_quota({"/", root_.string()}, "/a/b/c");
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->cpus, 1.5);
  EXPECT_EQ(quota->source, "cgroup v2 cpu.max 150000/100000 at " + (root_ / "a").string());
}

TEST_F(CgroupTreeTest, V2WithoutLimitOrFilesIsNoQuota) {
  write("a/cpu.max", "max 100000\n");
  EXPECT_FALSE(detail::read_cgroup_v2_quota({"/", root_.string()}, "/a/missing").has_value());
  EXPECT_FALSE(detail::read_cgroup_v2_quota({"/", (root_ / "nowhere").string()}, "/").has_value());
}

TEST_F(CgroupTreeTest, V2MountRootIsStrippedFromThePath) {
  // The container sees /docker/ab as its mount's root; the limit sits at the mount point.
  write("cpu.max", "50000 100000\n");
  const auto quota = detail::read_cgroup_v2_quota({"/docker/ab", root_.string()}, "/docker/ab");
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->cpus, 0.5);
  // A path outside the mount's root falls back to the mount point alone.
  const auto outside = detail::read_cgroup_v2_quota({"/docker/ab", root_.string()}, "/other/x");
  ASSERT_TRUE(outside.has_value());
  EXPECT_EQ(outside->cpus, 0.5);
}

TEST_F(CgroupTreeTest, V1ReadsQuotaAndPeriod) {
  write("cpu.cfs_quota_us", "-1\n");
  write("cpu.cfs_period_us", "100000\n");
  write("kubepods/pod/cpu.cfs_quota_us", "250000\n");
  write("kubepods/pod/cpu.cfs_period_us", "100000\n");
  const auto quota = detail::read_cgroup_v1_quota({"/", root_.string()}, "/kubepods/pod");
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->cpus, 2.5);
  EXPECT_NE(quota->source.find("250000/100000"), std::string::npos);
  EXPECT_FALSE(detail::read_cgroup_v1_quota({"/", root_.string()}, "/").has_value());
}

TEST(WorkerCountTest, DefaultIsWithinAffinity) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const auto affinity = static_cast<std::size_t>(CPU_COUNT(&set));

  const WorkerCount count = default_worker_count();
  EXPECT_GE(count.count, 1u);
  EXPECT_LE(count.count, affinity);
  EXPECT_FALSE(count.reason.empty());
  RecordProperty("reason", count.reason);
}

TEST(WorkerCountTest, DefaultFollowsANarrowedAffinityMask) {
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof(original), &original), 0);
  int first_cpu = 0;
  while (!CPU_ISSET(first_cpu, &original)) ++first_cpu;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first_cpu, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const WorkerCount count = default_worker_count();
  ASSERT_EQ(sched_setaffinity(0, sizeof(original), &original), 0);
  EXPECT_EQ(count.count, 1u);
}

}  // namespace
}  // namespace crew
