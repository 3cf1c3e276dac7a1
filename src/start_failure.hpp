// Why crew could not start a process or a thread, in words a user can act on. fork, clone and
// pthread_create fail with EAGAIN ("Resource temporarily unavailable") when the user's process
// limit is reached: the message names RLIMIT_NPROC (`ulimit -u`) and its value, as the descriptor
// messages name RLIMIT_NOFILE.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace crew::detail {

// "cannot start the zygote process (fork; RLIMIT_NPROC, this user's limit on processes and
// threads, is 64): Resource temporarily unavailable" — `what` names the process or thread, `how`
// the call; the limit is named for EAGAIN only, as process `starter` has it (0: this process; the
// zygote's may differ if someone lowered it with prlimit). Thread safety: safe.
[[nodiscard]] std::string describe_start_failure(std::string_view what, std::string_view how,
                                                 int error, pid_t starter = 0);

// Throws std::system_error(error) whose what() is "crew: " + describe_start_failure(…).
[[noreturn]] void throw_start_failure(std::string_view what, std::string_view how, int error);

}  // namespace crew::detail
