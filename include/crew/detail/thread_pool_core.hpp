// The non-template heart of ThreadPool: worker threads and one locked FIFO queue of jobs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "crew/future.hpp"
#include "crew/options.hpp"

namespace crew::detail {

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
};

class ThreadPoolCore {
 public:
  static constexpr std::chrono::microseconds kSpinBeforeSleep{50};

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
  bool help_until(const std::function<bool()>& ready,
                  std::optional<std::chrono::steady_clock::time_point> deadline);

  ShutdownReport shutdown(const ShutdownOptions& options);
  bool closed() const;
  void log(std::string_view line) const;

 private:
  void worker_loop();
  void spin_for_work() const;
  void notify_helpers();
  void join_workers();

  mutable std::mutex mu_;
  std::condition_variable work_cv_;    // workers sleep here when the queue is empty
  std::condition_variable helper_cv_;  // workers inside help_until() sleep here
  // Guarded by mu_. Workers pop only while holding mu_; shutdown sets stopping_ under mu_ and
  // notifies all, and a worker exits only when stopping_ is set and the queue is empty, so no
  // queued job is left behind by a normal shutdown.
  std::deque<std::shared_ptr<Job>> queue_;
  // queue_.size(), stored under mu_ and read without it by workers spinning before they sleep.
  std::atomic<std::size_t> queued_{0};
  bool closed_ = false;           // guarded by mu_: enqueue() refuses work
  bool stopping_ = false;         // guarded by mu_: workers exit once the queue is empty
  std::size_t idle_workers_ = 0;  // guarded by mu_: workers asleep on work_cv_
  // Workers inside help_until(). Read without mu_ after each job, so a finished job wakes them.
  std::atomic<std::size_t> helpers_waiting_{0};

  std::mutex join_mu_;  // serializes joining between concurrent shutdown(wait) calls
  std::vector<std::thread> threads_;
  std::shared_ptr<FailureLog> failures_ = std::make_shared<FailureLog>();
  LogHook on_log_;
};

}  // namespace crew::detail
