#include "start_failure.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace crew::detail {
namespace {

// "cannot start the zygote process (fork; RLIMIT_NPROC, …, is 64)": std::system_error appends
// ": Resource temporarily unavailable" itself.
std::string start_failure_context(std::string_view what, std::string_view how, int error,
                                  pid_t starter) {
  std::string text = "cannot start " + std::string(what) + " (" + std::string(how);
  rlimit limit{};
  // Linux counts every task (process or thread) of the real uid against RLIMIT_NPROC; root and
  // CAP_SYS_RESOURCE are exempt, and then only a cgroup's pids.max or kernel.threads-max refuse.
  if (error == EAGAIN && ::prlimit(starter, RLIMIT_NPROC, nullptr, &limit) == 0) {
    text += limit.rlim_cur == RLIM_INFINITY
                ? "; RLIMIT_NPROC is unlimited, so a cgroup's pids.max or kernel.threads-max "
                  "refused it"
                : "; RLIMIT_NPROC, this user's limit on processes and threads, is " +
                      std::to_string(limit.rlim_cur);
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
