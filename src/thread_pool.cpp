#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "crew/detail/thread_pool_core.hpp"
#include "crew/detail/worker_context.hpp"
#include "crew/errors.hpp"
#include "crew/thread_pool.hpp"
#include "crew/worker_count.hpp"

namespace crew::detail {
namespace {

thread_local ThreadPoolCore* t_current_pool = nullptr;

// Marks the calling thread as a worker of `pool` for its lifetime.
class WorkerScope {
 public:
  explicit WorkerScope(ThreadPoolCore* pool) { t_current_pool = pool; }
  ~WorkerScope() { t_current_pool = nullptr; }
  WorkerScope(const WorkerScope&) = delete;
  WorkerScope& operator=(const WorkerScope&) = delete;
};

}  // namespace

ThreadPoolCore* current_worker_pool() noexcept { return t_current_pool; }

void advise_huge_pages(void* data, std::size_t bytes) noexcept {
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  if (data == nullptr || bytes < 2 * kHugePage) return;
  // Only whole huge pages inside the block: madvise needs page alignment, and a huge page that
  // straddles the block's end would back memory the allocator may hand to someone else.
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (end > begin) {
    (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
}

bool help_until(ThreadPoolCore* pool, const std::function<bool()>& ready,
                std::optional<std::chrono::steady_clock::time_point> deadline) {
  return pool->help_until(ready, deadline);
}

ThreadPoolCore::ThreadPoolCore(std::size_t workers, LogHook on_log) : on_log_(std::move(on_log)) {
  threads_.reserve(workers);
  try {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    join_workers();
    throw;
  }
}

ThreadPoolCore::~ThreadPoolCore() { join_workers(); }

void ThreadPoolCore::enqueue(std::shared_ptr<Job> job, std::size_t copies) {
  bool wake_worker = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) throw PoolClosed("crew::ThreadPool: cannot take new work after shutdown()");
    for (std::size_t i = 1; i < copies; ++i) queue_.push_back(job);
    queue_.push_back(std::move(job));
    queued_.store(queue_.size(), std::memory_order_relaxed);
    wake_worker = idle_workers_ > 0;
  }
  // A notify costs a futex syscall: skip it when no worker sleeps (they re-check the queue before
  // sleeping, under mu_).
  if (wake_worker) {
    if (copies == 1) {
      work_cv_.notify_one();
    } else {
      work_cv_.notify_all();
    }
  }
  // A worker waiting inside help_until() may be the only one able to run this job.
  if (helpers_waiting_.load() != 0) notify_helpers();
}

// Spins up to kSpinBeforeSleep for work to appear, so a stream of submissions does not pay a
// futex wake-up (10-40 us on this VM) per task. Idle cost: one such spin per idle period.
// The clock is read after every yield: with more threads than CPUs one sched_yield can hand the
// CPU away for a whole time slice, and 64 of them between two looks at the clock once stretched
// this 50 us spin to tens of ms, stealing CPU from real work and making shutdown() wait ~70 ms
// for idle workers.
void ThreadPoolCore::spin_for_work() const {
  const auto deadline = std::chrono::steady_clock::now() + kSpinBeforeSleep;
  while (queued_.load(std::memory_order_relaxed) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
}

void ThreadPoolCore::worker_loop() {
  WorkerScope scope(this);
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      if (queue_.empty() && !stopping_) {
        lock.unlock();
        spin_for_work();
        lock.lock();
      }
      if (queue_.empty() && !stopping_) {
        ++idle_workers_;
        work_cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
        --idle_workers_;
      }
      if (queue_.empty()) return;  // stopping_ and drained
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    job->run();
    job.reset();  // release the job's captures before anyone is told it finished
    if (helpers_waiting_.load() != 0) notify_helpers();
  }
}

void ThreadPoolCore::notify_helpers() {
  // Taking mu_ orders this notify after a helper's predicate check (made under mu_), so the helper
  // cannot miss it.
  { std::lock_guard lock(mu_); }
  helper_cv_.notify_all();
}

bool ThreadPoolCore::help_until(const std::function<bool()>& ready,
                                std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  helpers_waiting_.fetch_add(1);
  bool satisfied = false;
  for (;;) {
    if (ready()) {
      satisfied = true;
      break;
    }
    if (!queue_.empty()) {
      std::shared_ptr<Job> job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
      lock.unlock();
      job->run();
      job.reset();
      lock.lock();
      continue;
    }
    if (deadline) {
      if (helper_cv_.wait_until(lock, *deadline) == std::cv_status::timeout) {
        satisfied = ready();
        break;
      }
    } else {
      helper_cv_.wait(lock);
    }
  }
  helpers_waiting_.fetch_sub(1);
  return satisfied;
}

ShutdownReport ThreadPoolCore::shutdown(const ShutdownOptions& options) {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    if (options.cancel_pending) dropped.swap(queue_);
    queued_.store(queue_.size(), std::memory_order_relaxed);
  }
  ShutdownReport report;
  for (auto& job : dropped) report.tasks_cancelled += job->cancel_queued();
  dropped.clear();
  // Cancelling settles futures outside any job run: wake helpers that may wait on them.
  notify_helpers();
  // A worker cannot join itself: shutdown(wait) from inside a task only closes the pool; the
  // destructor joins.
  if (options.wait && current_worker_pool() != this) join_workers();
  report.unobserved_failures = failures_->count();
  report.first_unobserved_failure = failures_->first();
  return report;
}

bool ThreadPoolCore::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

void ThreadPoolCore::join_workers() {
  std::lock_guard join_lock(join_mu_);
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
}

void ThreadPoolCore::log(std::string_view line) const {
  if (on_log_) {
    on_log_(line);
  } else {
    std::fprintf(stderr, "crew: %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

}  // namespace crew::detail

// ---------------------------------------------------------------------------------------------
// crew::ThreadPool's non-template members.

namespace crew {

ThreadPool::ThreadPool(PoolOptions options) {
  std::size_t workers = 0;
  if (options.workers) {
    workers = *options.workers;
    if (workers < 1 || workers > kMaxWorkers) {
      throw std::invalid_argument("crew::ThreadPool: workers must be between 1 and " +
                                  std::to_string(kMaxWorkers) + ", got " + std::to_string(workers));
    }
  } else {
    workers = default_worker_count().count;
  }
  core_ = std::make_unique<detail::ThreadPoolCore>(workers, std::move(options.on_log));
}

ThreadPool::~ThreadPool() {
  const ShutdownReport report = core_->shutdown({.wait = true, .cancel_pending = false});
  if (report.unobserved_failures != 0) {
    core_->log(std::to_string(report.unobserved_failures) +
               " failed task(s) were never observed (their futures were dropped); first: " +
               report.first_unobserved_failure);
  }
}

ShutdownReport ThreadPool::shutdown(const ShutdownOptions& options) {
  return core_->shutdown(options);
}

}  // namespace crew
