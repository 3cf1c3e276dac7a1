// Options structs for crew's pools. Every field has a default, so `{.workers = 4}` reads like
// Python's keyword arguments.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

namespace crew {

// Called with one line of text when a pool has something to say that is not an exception (e.g. at
// shutdown: "2 failed tasks were never observed; first: …"). Default: a line on stderr.
using LogHook = std::function<void(std::string_view line)>;

// Options for constructing a pool.
struct PoolOptions {
  // Number of workers. Unset: crew::default_worker_count() (affinity mask ∩ cgroup CPU quota).
  // Set: must be ≥ 1, else std::invalid_argument naming "workers".
  std::optional<std::size_t> workers = {};
  // Where the pool's diagnostics go. Unset: stderr.
  LogHook on_log = {};
};

// Options for constructing a crew::ProcessPool.
struct ProcessPoolOptions {
  // Number of worker processes. Unset: crew::default_worker_count(). Set: 1 … kMaxWorkers, else
  // std::invalid_argument naming "workers".
  std::optional<std::size_t> workers = {};
  // Runs once in each worker process as it starts, before its first task. Any callable: workers
  // are forked, so it is the very object given here. Throwing (or a worker dying in it) makes the
  // pool a crew::BrokenPool whose what() holds the exception's text — no endless respawn.
  std::function<void()> initializer = {};
  // Replace a worker (a new process) after it ran this many tasks; a map chunk counts as one
  // task, as in Python's Pool. Unset: workers live as long as the pool. Set: must be ≥ 1.
  std::optional<std::size_t> max_tasks_per_child = {};
  // A task running longer than this fails with crew::TaskTimeout; its worker is stopped
  // (SIGTERM, then SIGKILL after timeout_grace) and replaced. A map chunk of n items gets n times
  // this; while a timeout is set, map's automatic chunksize is 1. Unset: no limit.
  std::optional<std::chrono::milliseconds> task_timeout = {};
  // Between SIGTERM and SIGKILL for a worker that ran past task_timeout.
  std::chrono::milliseconds timeout_grace{100};
  // Crash loop: this many worker deaths (signals or exits, timeouts not counted) within
  // crash_loop_window make the pool a crew::BrokenPool instead of respawning forever.
  std::size_t crash_loop_deaths = 10;
  std::chrono::milliseconds crash_loop_window{1000};
  // Where the pool's diagnostics go. Unset: stderr.
  LogHook on_log = {};
  // Say once (through on_log) when the pool forks from a process that already runs other threads:
  // a lock held by one of them at fork time stays locked in the workers. A program that knows its
  // other threads hold no locks a worker could need (crew's own CLI) turns this off.
  bool warn_if_threads_running = true;
};

// Options for map, imap, imap_unordered, starmap and map_outcomes.
struct MapOptions {
  // Items per chunk. Unset: automatic — for inputs of known size, about 64 chunks per worker (so
  // uneven item costs cannot leave a worker idle), at most kMaxAutoChunksize items; for inputs of
  // unknown size, chunks grow from 1 by doubling while they finish in under a millisecond.
  // Set: must be ≥ 1, else std::invalid_argument naming "chunksize".
  std::optional<std::size_t> chunksize = {};
  // Chunks in flight at once for lazily pulled input (imap, imap_unordered, and map over an input
  // that is not a sized random-access range). Unset: 4 per worker. Bounds the memory of input read
  // ahead and of the reorder buffer. Set: must be ≥ 1, else std::invalid_argument naming "window".
  std::optional<std::size_t> window = {};
  // Called after each chunk completes with (items done, items total); total is 0 when the input's
  // size is unknown. Called from a worker thread or the caller's thread, never concurrently with
  // itself, with non-decreasing `done`.
  std::function<void(std::size_t done, std::size_t total)> on_progress = {};
  // When stop is requested, chunks not yet started are cancelled and the call throws
  // crew::Cancelled once those in flight have settled.
  std::stop_token stop = {};
};

inline constexpr std::size_t kMaxAutoChunksize = 1 << 16;

// Options for shutdown().
struct ShutdownOptions {
  // Block until every queued task has run (or been cancelled) and every worker has exited.
  bool wait = true;
  // Cancel every task still queued: its future's get() throws crew::Cancelled.
  bool cancel_pending = false;
};

// What shutdown() found. A task that failed while nobody held its future (dropped unobserved) is
// counted here instead of vanishing.
struct ShutdownReport {
  std::size_t tasks_cancelled = 0;
  std::size_t unobserved_failures = 0;
  std::string first_unobserved_failure;  // describe_exception() of the first one, or empty
};

}  // namespace crew
