// The two kinds of child process a ProcessPool makes: the zygote (a single-threaded fork server
// made once per pool) and the workers it clones.
#pragma once

#include <sys/types.h>

#include "crew/options.hpp"

namespace crew::detail {

// Puts a freshly forked child in a known state: every signal at its default action but SIGINT,
// which is ignored (a terminal's ^C goes to the whole process group; the host decides), an empty
// signal mask (the host may block signals, as crew's CLI does), and no descriptor open but 0, 1,
// 2 and `keep`, which ends up as descriptor 3. Returns 3.
int reset_child_process(int keep) noexcept;

// The zygote: reads spawn requests from `control` (one byte each), clones a worker for each with
// CLONE_PARENT (so the host is the worker's parent and reaps it), and sends back the worker's pid
// and the host's end of its socket. Exits when `control` reaches end of stream (the host closed it
// or died). Never returns.
[[noreturn]] void run_zygote(int control, pid_t host, const ProcessPoolOptions& options) noexcept;

// A worker: runs the initializer, says READY, then serves requests on `socket` until it reads
// end of stream or a QUIT frame, or notices that the host died. Never returns.
[[noreturn]] void run_worker(int socket, pid_t host, const ProcessPoolOptions& options) noexcept;

// What the zygote sends back per spawn request (with the socket as SCM_RIGHTS).
struct SpawnReply {
  pid_t pid;  // the worker's pid, or -errno when the clone failed
};

}  // namespace crew::detail
