// The non-template heart of ThreadPool: worker threads and one locked FIFO queue of jobs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "crew/detail/worker_context.hpp"
#include "crew/future.hpp"
#include "crew/options.hpp"

namespace crew::detail {

// Who submitted a job, for the helping rule: a link per running job that submitted something,
// pointing up to the link of the job that submitted *it*. Links are owned by the frames of running
// jobs and referred to weakly, so a job's lineage ends at its first ancestor that has returned:
// memory stays bounded by what runs, however long a chain of continuations grows.
struct Lineage {
  Lineage(std::weak_ptr<const Lineage> up, const void* owner_group)
      : parent(std::move(up)), group(owner_group) {}
  const std::weak_ptr<const Lineage> parent;
  const void* const group;  // what a waiter names to wait on the job owning this link
};

// One unit of queued work. The same Job object may be queued several times (a map's chunk runner
// is queued once per worker): run() or cancel_queued() is called once per queued copy.
class Job {
 public:
  virtual ~Job() = default;
  // Runs the work. Must not throw: failures are stored in the job's own state.
  virtual void run() noexcept = 0;
  // The queued copy will never run (shutdown with cancel_pending). Returns the number of user
  // tasks this cancelled (for ShutdownReport).
  virtual std::size_t cancel_queued() noexcept = 0;

  // What a waiter names to wait on this job (a future's task, a map run whose chunks are separate
  // jobs); nullptr: the job itself.
  const void* group = nullptr;
  // Set by enqueue(), before the job is visible to any worker: the lineage of the job that was
  // running on the submitting worker; empty when a thread outside the pool submitted it.
  std::weak_ptr<const Lineage> parent;

  // A job queued once (a task) is run by whoever claims it first: a worker popping it, or a
  // waiter that claims it straight from its future without scanning the queue; the other finds
  // it claimed and skips it. Set before the job is queued.
  bool claim_once = false;
  std::atomic<bool> claimed{false};
  // Guarded by the pool's lock: the link of this job's running frame once it has submitted
  // something (a claim_once job runs in one frame). Expired: it has no sub-task a waiter could
  // look for.
  mutable std::weak_ptr<const Lineage> own_link;
};

class ThreadPoolCore {
 public:
  static constexpr std::chrono::microseconds kSpinBeforeSleep{50};
  // Spare threads run the awaited work of workers blocked in timed waits; at most this many.
  static constexpr std::size_t kMaxSpareThreads = 256;

  // Starts `workers` threads. Throws: std::system_error if a thread cannot start (the threads
  // already started are stopped first).
  ThreadPoolCore(std::size_t workers, LogHook on_log);
  ~ThreadPoolCore();
  ThreadPoolCore(const ThreadPoolCore&) = delete;
  ThreadPoolCore& operator=(const ThreadPoolCore&) = delete;

  std::size_t worker_count() const noexcept { return threads_.size(); }
  const std::shared_ptr<FailureLog>& failures() const noexcept { return failures_; }

  // Queues `copies` references to job. Throws: crew::PoolClosed after shutdown(), except to a task
  // of this pool that is still running (its sub-tasks are part of the work being drained).
  void enqueue(std::shared_ptr<Job> job, std::size_t copies = 1);

  // See help_until() in worker_context.hpp. Call only from a worker of this pool.
  void help_until(HelpWait& wait);
  // See BlockedWorker in worker_context.hpp.
  void begin_blocked_wait(std::span<const void* const> awaited);
  void end_blocked_wait(std::span<const void* const> awaited) noexcept;

  ShutdownReport shutdown(const ShutdownOptions& options);
  bool closed() const;
  void log(std::string_view line) const;

  // A waiter that found nothing it may run (guarded by mu_). `wait` is kicked when a job it may
  // run is queued; a timed waiter has no `wait` and is served by the spares instead.
  struct BlockedWaiter {
    std::span<const void* const> awaited;
    HelpWait* wait;
  };

 private:
  void worker_loop();
  void spare_loop();
  void spin_for_work() const;
  void join_workers();
  // Under mu_: removes and returns the newest queued job that one of `awaited` names or that
  // descends from it, or nullptr.
  std::shared_ptr<Job> take_allowed(std::span<const void* const> awaited);
  // Under mu_: the same for the spares, over every timed waiter.
  std::shared_ptr<Job> take_for_spares();

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // workers sleep here when the queue is empty
  std::condition_variable spare_cv_;  // spares sleep here until spare_epoch_ moves
  // Guarded by mu_. Workers pop only while holding mu_; shutdown sets stopping_ under mu_ and
  // notifies all, and a worker exits only when stopping_ is set and the queue is empty, so no
  // queued job is left behind by a normal shutdown.
  std::deque<std::shared_ptr<Job>> queue_;
  // queue_.size(), stored under mu_ and read without it by workers spinning before they sleep.
  std::atomic<std::size_t> queued_{0};
  bool closed_ = false;                 // guarded by mu_: enqueue() refuses outside work
  bool stopping_ = false;               // guarded by mu_: workers exit once the queue is empty
  std::size_t idle_workers_ = 0;        // guarded by mu_: workers asleep on work_cv_
  std::size_t exited_workers_ = 0;      // guarded by mu_: past stopping_, spares drain after them
  std::vector<BlockedWaiter> blocked_;  // guarded by mu_: helpers (wait set) and timed waiters
  // Guarded by mu_: timed waiters in blocked_, spares running a job for them (a spare takes one
  // only while running_spares_ < timed_waiters_), and a counter bumped whenever a spare may find
  // new work.
  std::size_t timed_waiters_ = 0;
  std::size_t running_spares_ = 0;
  std::uint64_t spare_epoch_ = 0;
  std::vector<std::thread> spares_;  // guarded by mu_; joined by join_workers()

  std::mutex join_mu_;  // serializes joining between concurrent shutdown(wait) calls
  std::vector<std::thread> threads_;
  std::shared_ptr<FailureLog> failures_ = std::make_shared<FailureLog>();
  LogHook on_log_;
};

}  // namespace crew::detail
