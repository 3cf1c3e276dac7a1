// Which pool, if any, the calling thread works for, and the "help while waiting" wait that lets a
// task wait on work of its own pool without deadlocking it.
#pragma once

#include <chrono>
#include <functional>
#include <optional>

namespace crew::detail {

class ThreadPoolCore;

// The pool whose worker is the calling thread, or nullptr. Thread safety: reads a thread_local.
ThreadPoolCore* current_worker_pool() noexcept;

// Called by a worker of `pool` that must wait: runs queued tasks of the pool until ready() is true
// or the deadline passes. ready() is evaluated under the pool's lock, so it must be cheap and must
// not take that lock. Returns ready().
bool help_until(ThreadPoolCore* pool, const std::function<bool()>& ready,
                std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

}  // namespace crew::detail
