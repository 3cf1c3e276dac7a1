// The two kinds of child process a ProcessPool makes: the zygote (a single-threaded fork server
// made once per pool) and the workers it clones.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "crew/options.hpp"

namespace crew::detail {

// The zygote: reads spawn requests from `control` (one byte each), clones a worker for each with
// CLONE_PARENT (so the host is the worker's parent and reaps it), and sends back the worker's pid
// and the host's end of its socket. It also watches the host (a pidfd) and every worker it cloned
// (a pidfd each): when the host dies it SIGKILLs them all and exits. At end of stream on `control`
// (the pool is closing) it exits once its workers have. Never returns.
//
// Both kinds of child start from a known state: every signal at its default action but SIGINT,
// which is ignored (a terminal's ^C goes to the whole process group; the host decides), an empty
// signal mask (the host may block signals, as crew's CLI does), and no descriptor open but 0, 1,
// 2 and crew's own, which is close-on-exec and numbered above every descriptor the host had open
// (see docs/process_pool.md, "Rules the pool relies on").
//
// The zygote is forked from a host that may run threads, so after the fork it allocates nothing
// (another thread may have held an allocator lock at fork time; ASan's allocator, unlike glibc's,
// is not reset in the child): what it needs is measured and allocated by the host before the
// fork, in a ZygotePlan.
class ZygotePlan {
 public:
  // In the host, just before the fork: `max_workers` bounds the workers alive at once.
  explicit ZygotePlan(std::size_t max_workers);
  int crew_fd_floor = 3;                // crew's descriptor in a worker sits at or above this
  bool parent_death_signal = false;     // made on the host's main thread (see run_worker)
  std::vector<int> clone_pidfds;        // capacity reserved: the workers the zygote watches
  std::vector<struct pollfd> poll_fds;  // capacity reserved: host, control and each worker
};

[[noreturn]] void run_zygote(int control, pid_t host, const ProcessPoolOptions& options,
                             ZygotePlan& plan) noexcept;

// A worker: runs the initializer, says READY, then serves requests on `socket` until it reads
// end of stream or a QUIT frame (or the zygote kills it: the host died). Never returns.
[[noreturn]] void run_worker(int socket, pid_t host, const ProcessPoolOptions& options) noexcept;

// What the zygote sends back per spawn request (with the socket as SCM_RIGHTS).
struct SpawnReply {
  pid_t pid;  // the worker's pid, or -errno when the clone failed
};

}  // namespace crew::detail
