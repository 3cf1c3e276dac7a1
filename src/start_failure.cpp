#include "start_failure.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace crew::detail {
namespace {

std::string proc_path(pid_t pid, std::string_view file) {
  return (pid == 0 ? std::string("/proc/self/") : "/proc/" + std::to_string(pid) + "/") +
         std::string(file);
}

// Whether process `pid` (0: this one) is in the initial user namespace, whose root and
// capabilities are the ones the kernel's fork checks.
bool in_initial_user_namespace(pid_t pid) {
  std::ifstream map(proc_path(pid, "uid_map"));
  std::uint64_t inside = 1;
  std::uint64_t outside = 1;
  std::uint64_t count = 0;
  return map >> inside >> outside >> count && inside == 0 && outside == 0 && count == 4294967295U;
}

// Whether the kernel lets process `pid` (0: this one) pass RLIMIT_NPROC, as fork.c decides it: its
// real uid is the initial namespace's root, or it holds CAP_SYS_RESOURCE or CAP_SYS_ADMIN there.
// From /proc/PID/status and uid_map; false when they cannot be read.
bool exempt_from_process_limit(pid_t pid) {
  if (!in_initial_user_namespace(pid)) return false;
  std::ifstream status(proc_path(pid, "status"));
  constexpr unsigned kCapSysAdmin = 21;
  constexpr unsigned kCapSysResource = 24;
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("Uid:")) {
      std::istringstream fields(line.substr(4));
      long real_uid = -1;
      if (fields >> real_uid && real_uid == 0) return true;
    } else if (line.starts_with("CapEff:")) {
      std::uint64_t caps = 0;
      std::istringstream(line.substr(7)) >> std::hex >> caps;
      return (caps >> kCapSysAdmin & 1U) != 0 || (caps >> kCapSysResource & 1U) != 0;
    }
  }
  return false;
}

// "cannot start the zygote process (fork; RLIMIT_NPROC, …, is 64)": std::system_error appends
// ": Resource temporarily unavailable" itself.
std::string start_failure_context(std::string_view what, std::string_view how, int error,
                                  pid_t starter) {
  std::string text = "cannot start " + std::string(what) + " (" + std::string(how);
  rlimit limit{};
  // Linux counts every task (process or thread) of the real uid against RLIMIT_NPROC; root and
  // CAP_SYS_RESOURCE are exempt, and then only a cgroup's pids.max or kernel.threads-max refuse.
  if (error == EAGAIN && ::prlimit(starter, RLIMIT_NPROC, nullptr, &limit) == 0) {
    if (limit.rlim_cur == RLIM_INFINITY) {
      text +=
          "; RLIMIT_NPROC is unlimited, so a cgroup's pids.max or kernel.threads-max refused it";
    } else if (exempt_from_process_limit(starter)) {
      text +=
          "; RLIMIT_NPROC does not bind root or CAP_SYS_RESOURCE, so a cgroup's pids.max or "
          "kernel.threads-max refused it";
    } else {
      text += "; RLIMIT_NPROC, this user's limit on processes and threads, is " +
              std::to_string(limit.rlim_cur);
    }
  }
  return text + ")";
}

}  // namespace

std::string describe_start_failure(std::string_view what, std::string_view how, int error,
                                   pid_t starter) {
  return start_failure_context(what, how, error, starter) + ": " + std::strerror(error);
}

void throw_start_failure(std::string_view what, std::string_view how, int error) {
  throw std::system_error(error, std::generic_category(),
                          "crew: " + start_failure_context(what, how, error, 0));
}

}  // namespace crew::detail
