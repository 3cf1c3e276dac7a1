// The two kinds of child process a ProcessPool makes: the zygote (a single-threaded fork server
// made once per pool) and the workers it clones.
#pragma once

#include <sys/types.h>

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
[[noreturn]] void run_zygote(int control, pid_t host, const ProcessPoolOptions& options) noexcept;

// A worker: runs the initializer, says READY, then serves requests on `socket` until it reads
// end of stream or a QUIT frame (or the zygote kills it: the host died). Never returns.
[[noreturn]] void run_worker(int socket, pid_t host, const ProcessPoolOptions& options) noexcept;

// What the zygote sends back per spawn request (with the socket as SCM_RIGHTS).
struct SpawnReply {
  pid_t pid;  // the worker's pid, or -errno when the clone failed
};

}  // namespace crew::detail
