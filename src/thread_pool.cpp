#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>

#include "crew/detail/thread_pool_core.hpp"
#include "crew/detail/worker_context.hpp"
#include "crew/errors.hpp"
#include "crew/thread_pool.hpp"
#include "crew/worker_count.hpp"
#include "start_failure.hpp"

namespace crew::detail {
namespace {

thread_local ThreadPoolCore* t_current_pool = nullptr;

// The job this thread is running, innermost first (a wait runs jobs on the waiter's stack).
struct RunFrame {
  const Job* job;
  std::shared_ptr<Lineage> self;  // made when the job first submits to its pool
  RunFrame* outer;
};
thread_local RunFrame* t_frame = nullptr;

// Marks the calling thread as a worker of `pool` for its lifetime.
class WorkerScope {
 public:
  explicit WorkerScope(ThreadPoolCore* pool) { t_current_pool = pool; }
  ~WorkerScope() { t_current_pool = nullptr; }
  WorkerScope(const WorkerScope&) = delete;
  WorkerScope& operator=(const WorkerScope&) = delete;
};

const void* group_of(const Job& job) noexcept {
  return job.group != nullptr ? job.group : static_cast<const void*>(&job);
}

void run_job(Job& job) noexcept {
  if (job.claim_once && job.claimed.exchange(true, std::memory_order_acq_rel)) return;
  RunFrame frame{&job, nullptr, t_frame};
  t_frame = &frame;
  job.run();
  t_frame = frame.outer;
}

// The lineage a job submitted from this thread to `pool` carries. `created`: this call made the
// running job's link (the caller records it as the job's own_link under the pool's lock).
std::weak_ptr<const Lineage> submitter_lineage(const ThreadPoolCore* pool, bool& created) {
  created = false;
  if (t_current_pool != pool || t_frame == nullptr) return {};
  if (!t_frame->self) {
    t_frame->self = std::make_shared<Lineage>(t_frame->job->parent, group_of(*t_frame->job));
    created = true;
  }
  return t_frame->self;
}

bool names(std::span<const void* const> awaited, const void* group) noexcept {
  return std::find(awaited.begin(), awaited.end(), group) != awaited.end();
}

// True when a waiter on `awaited` may run `job`: one of them, or submitted from inside one of them
// (directly or by their sub-tasks) while that one still runs.
bool may_run(const Job& job, std::span<const void* const> awaited) {
  if (awaited.empty()) return false;
  if (names(awaited, group_of(job))) return true;
  for (auto up = job.parent.lock(); up; up = up->parent.lock()) {
    if (names(awaited, up->group)) return true;
  }
  return false;
}

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

void help_until(ThreadPoolCore* pool, HelpWait& wait) { pool->help_until(wait); }

BlockedWorker::BlockedWorker(ThreadPoolCore* pool, std::span<const void* const> awaited) noexcept
    : pool_(pool != nullptr && current_worker_pool() == pool ? pool : nullptr), awaited_(awaited) {
  if (pool_ != nullptr) pool_->begin_blocked_wait(awaited_);
}
BlockedWorker::~BlockedWorker() {
  if (pool_ != nullptr) pool_->end_blocked_wait(awaited_);
}

ThreadPoolCore::ThreadPoolCore(std::size_t workers, LogHook on_log) : on_log_(std::move(on_log)) {
  threads_.reserve(workers);
  try {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  } catch (const std::system_error& error) {
    join_workers();
    detail::throw_start_failure("a worker thread",
                                "std::thread; " + std::to_string(threads_.size()) + " of " +
                                    std::to_string(workers) + " started",
                                error.code().value());
  } catch (...) {
    join_workers();
    throw;
  }
}

ThreadPoolCore::~ThreadPoolCore() { join_workers(); }

void ThreadPoolCore::enqueue(std::shared_ptr<Job> job, std::size_t copies) {
  bool created_link = false;
  job->parent = submitter_lineage(this, created_link);
  bool wake_worker = false;
  bool wake_spare = false;
  {
    std::lock_guard lock(mu_);
    if (created_link) t_frame->job->own_link = t_frame->self;
    // A running task of this pool may still submit while the pool drains: its sub-tasks are part
    // of work already accepted, and refusing them would fail it.
    if (closed_ && current_worker_pool() != this) {
      throw PoolClosed("crew::ThreadPool: cannot take new work after shutdown()");
    }
    for (std::size_t i = 1; i < copies; ++i) queue_.push_back(job);
    queue_.push_back(job);
    queued_.store(queue_.size(), std::memory_order_relaxed);
    wake_worker = idle_workers_ > 0;
    // Kicked under mu_: a waiter leaves blocked_ under mu_ before its wait object dies.
    for (const BlockedWaiter& waiter : blocked_) {
      if (!may_run(*job, waiter.awaited)) continue;
      if (waiter.wait != nullptr) {
        waiter.wait->kick();
      } else {
        wake_spare = true;
      }
    }
    if (stopping_ && exited_workers_ == threads_.size()) wake_spare = true;
    if (wake_spare) ++spare_epoch_;
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
  if (wake_spare) spare_cv_.notify_all();
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
      if (queue_.empty()) {  // stopping_ and drained
        if (++exited_workers_ == threads_.size()) {
          ++spare_epoch_;  // the spares drain what running tasks still submit
          spare_cv_.notify_all();
        }
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    run_job(*job);
    job.reset();  // release the job's captures before anyone is told it finished
  }
}

// A spare runs what workers blocked in timed waits wait on (never other work, so the pool does
// not widen for unrelated tasks), at most one job per such waiter at a time. Once the pool stops
// and its workers have exited, spares drain what tasks still running on them submit, then exit.
void ThreadPoolCore::spare_loop() {
  WorkerScope scope(this);
  std::unique_lock lock(mu_);
  for (;;) {
    std::shared_ptr<Job> job;
    const bool draining = stopping_ && exited_workers_ == threads_.size();
    if (draining && !queue_.empty()) {
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
    } else if (draining && running_spares_ == 0 && timed_waiters_ == 0) {
      ++spare_epoch_;  // let the other parked spares see it too
      spare_cv_.notify_all();
      return;
    } else if (running_spares_ < timed_waiters_) {
      job = take_for_spares();
    }
    if (!job) {
      const std::uint64_t seen = spare_epoch_;
      spare_cv_.wait(lock, [&] { return spare_epoch_ != seen; });
      continue;
    }
    ++running_spares_;
    lock.unlock();
    run_job(*job);
    job.reset();
    lock.lock();
    --running_spares_;
    ++spare_epoch_;  // a slot is free, or the drain may be over
    spare_cv_.notify_all();
  }
}

std::shared_ptr<Job> ThreadPoolCore::take_allowed(std::span<const void* const> awaited) {
  if (awaited.empty()) return nullptr;
  // Newest first: sub-tasks were queued last, and running them depth-first keeps the number of
  // tasks in flight small.
  for (auto it = queue_.end(); it != queue_.begin();) {
    --it;
    if (!may_run(**it, awaited)) continue;
    std::shared_ptr<Job> taken = std::move(*it);
    queue_.erase(it);
    queued_.store(queue_.size(), std::memory_order_relaxed);
    return taken;
  }
  return nullptr;
}

std::shared_ptr<Job> ThreadPoolCore::take_for_spares() {
  for (const BlockedWaiter& waiter : blocked_) {
    if (waiter.wait != nullptr) continue;
    if (auto job = take_allowed(waiter.awaited)) return job;
  }
  return nullptr;
}

void ThreadPoolCore::help_until(HelpWait& wait) {
  // The task waited on, if still queued, runs here at once: no scan of the queue to find it.
  if (wait.claimable != nullptr) run_job(*wait.claimable);
  for (;;) {
    if (wait.ready()) return;
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu_);
      // A claimed task that submitted nothing has no sub-task to look for: skip the scan (a chain
      // of tasks each waiting on the previous one would otherwise scan the queue once per wait).
      const bool nothing_to_find = wait.claimable != nullptr && wait.awaited.size() == 1 &&
                                   wait.claimable->own_link.expired();
      if (!nothing_to_find) job = take_allowed(wait.awaited);
      if (!job) blocked_.push_back({wait.awaited, &wait});
    }
    if (job) {
      run_job(*job);
      job.reset();
      continue;
    }
    // What it waits on runs elsewhere: block until it is done, or until one of its sub-tasks is
    // queued (enqueue kicks).
    wait.block();
    std::lock_guard lock(mu_);
    std::erase_if(blocked_, [&](const BlockedWaiter& b) { return b.wait == &wait; });
  }
}

void ThreadPoolCore::begin_blocked_wait(std::span<const void* const> awaited) {
  {
    std::lock_guard lock(mu_);
    blocked_.push_back({awaited, nullptr});
    ++timed_waiters_;
    if (spares_.size() < timed_waiters_ && spares_.size() < kMaxSpareThreads) {
      try {
        spares_.emplace_back([this] { spare_loop(); });
      } catch (const std::system_error&) {
        // No thread to spare: the timed wait still returns by its deadline.
      }
    }
    ++spare_epoch_;
  }
  spare_cv_.notify_all();
}

void ThreadPoolCore::end_blocked_wait(std::span<const void* const> awaited) noexcept {
  std::lock_guard lock(mu_);
  for (auto it = blocked_.begin(); it != blocked_.end(); ++it) {
    if (it->wait == nullptr && it->awaited.data() == awaited.data()) {
      blocked_.erase(it);
      break;
    }
  }
  --timed_waiters_;
  ++spare_epoch_;
  spare_cv_.notify_all();
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
  // Cancelling settles each future, which wakes whoever waits on it (a helper included). A task a
  // waiter already claimed is not cancelled: it ran, or runs.
  for (auto& job : dropped) {
    if (job->claim_once && job->claimed.exchange(true, std::memory_order_acq_rel)) continue;
    report.tasks_cancelled += job->cancel_queued();
  }
  dropped.clear();
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
  // The workers have drained the queue, and a closed pool takes no new job: the spares exit. A
  // job still running on a spare may start one more (a timed wait), hence the loop.
  for (;;) {
    std::vector<std::thread> spares;
    {
      std::lock_guard lock(mu_);
      spares.swap(spares_);
    }
    if (spares.empty()) break;
    {
      std::lock_guard lock(mu_);
      ++spare_epoch_;
    }
    spare_cv_.notify_all();
    for (auto& thread : spares) {
      if (thread.get_id() == std::this_thread::get_id()) {
        thread.detach();  // shutdown(wait) from a task on a spare: it exits on its own
      } else if (thread.joinable()) {
        thread.join();
      }
    }
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
