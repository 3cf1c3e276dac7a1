// The non-template heart of ThreadPool: worker threads and one locked FIFO queue of jobs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
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
// pointing up to the link of the job that submitted *it*. A link made while its ancestors have
// finished points past them, so a chain of continuations stays one link long.
struct Lineage {
  explicit Lineage(std::shared_ptr<const Lineage> up) : parent(std::move(up)) {}
  const std::shared_ptr<const Lineage> parent;
  mutable std::atomic<bool> running{true};  // false once the job that owns this link returned
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

  // Set by enqueue(), before the job is visible to any worker: the lineage of the job that was
  // running on the submitting worker, or nullptr when a thread outside the pool submitted it.
  std::shared_ptr<const Lineage> parent;
};

class ThreadPoolCore {
 public:
  static constexpr std::chrono::microseconds kSpinBeforeSleep{50};
  // Spare threads stand in for workers blocked in waits; beyond this many such waits at once, a
  // wait just blocks (it still ends: what it waits on runs elsewhere or has a deadline).
  static constexpr std::size_t kMaxSpareThreads = 256;

  // Starts `workers` threads. Throws: std::system_error if a thread cannot start (the threads
  // already started are stopped first).
  ThreadPoolCore(std::size_t workers, LogHook on_log);
  ~ThreadPoolCore();
  ThreadPoolCore(const ThreadPoolCore&) = delete;
  ThreadPoolCore& operator=(const ThreadPoolCore&) = delete;

  std::size_t worker_count() const noexcept { return threads_.size(); }
  const std::shared_ptr<FailureLog>& failures() const noexcept { return failures_; }

  // Queues `copies` references to job. Throws: crew::PoolClosed after shutdown().
  void enqueue(std::shared_ptr<Job> job, std::size_t copies = 1);

  // See help_until() in worker_context.hpp. Call only from a worker of this pool.
  void help_until(HelpWait& wait);
  // See BlockedWorker in worker_context.hpp.
  void begin_blocked_wait();
  void end_blocked_wait() noexcept;

  ShutdownReport shutdown(const ShutdownOptions& options);
  bool closed() const;
  void log(std::string_view line) const;

  // A waiter inside help_until() that found nothing it may run (guarded by mu_).
  struct BlockedHelper {
    const Lineage* frame;
    HelpWait* wait;
  };

 private:
  void worker_loop();
  void spare_loop();
  void spin_for_work() const;
  void join_workers();
  // Under mu_: counts a blocked wait and starts a spare if none is free. True: notify spare_cv_.
  bool note_blocked_locked();
  // Under mu_: removes and returns the newest queued job the waiter may run, or nullptr.
  std::shared_ptr<Job> take_allowed(const Lineage* frame, std::span<const void* const> awaited);

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // workers sleep here when the queue is empty
  std::condition_variable spare_cv_;  // spare threads sleep here while no worker is blocked
  // Guarded by mu_. Workers pop only while holding mu_; shutdown sets stopping_ under mu_ and
  // notifies all, and a worker exits only when stopping_ is set and the queue is empty, so no
  // queued job is left behind by a normal shutdown.
  std::deque<std::shared_ptr<Job>> queue_;
  // queue_.size(), stored under mu_ and read without it by workers spinning before they sleep.
  std::atomic<std::size_t> queued_{0};
  bool closed_ = false;           // guarded by mu_: enqueue() refuses work
  bool stopping_ = false;         // guarded by mu_: workers exit once the queue is empty
  std::size_t idle_workers_ = 0;  // guarded by mu_: workers asleep on work_cv_
  // Guarded by mu_: enqueue() kicks those whose frame the new job descends from.
  std::vector<BlockedHelper> blocked_helpers_;
  // Guarded by mu_: workers blocked in a wait (timed, or helping with nothing to run), and spare
  // threads running a job for them. A spare
  // takes a job only while running_spares_ < blocked_waits_, so the pool runs `workers` jobs.
  std::size_t blocked_waits_ = 0;
  std::size_t running_spares_ = 0;
  std::size_t idle_spares_ = 0;
  std::vector<std::thread> spares_;  // guarded by mu_; joined by join_workers()

  std::mutex join_mu_;  // serializes joining between concurrent shutdown(wait) calls
  std::vector<std::thread> threads_;
  std::shared_ptr<FailureLog> failures_ = std::make_shared<FailureLog>();
  LogHook on_log_;
};

}  // namespace crew::detail
