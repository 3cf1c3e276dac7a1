#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>

#include "crew/detail/thread_pool_core.hpp"
#include "crew/detail/worker_context.hpp"
#include "crew/errors.hpp"
#include "crew/thread_pool.hpp"
#include "crew/worker_count.hpp"

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

void run_job(Job& job) noexcept {
  RunFrame frame{&job, nullptr, t_frame};
  t_frame = &frame;
  job.run();
  t_frame = frame.outer;
  if (frame.self) frame.self->running.store(false, std::memory_order_release);
}

// The lineage a job submitted from this thread to `pool` carries.
std::shared_ptr<const Lineage> submitter_lineage(const ThreadPoolCore* pool) {
  if (t_current_pool != pool || t_frame == nullptr) return nullptr;
  if (!t_frame->self) {
    std::shared_ptr<const Lineage> up = t_frame->job->parent;
    while (up && !up->running.load(std::memory_order_acquire)) up = up->parent;
    t_frame->self = std::make_shared<Lineage>(std::move(up));
  }
  return t_frame->self;
}

// True when `job` was submitted from inside the job that owns `frame`, directly or through its
// sub-tasks.
bool descends_from(const Job& job, const Lineage* frame) noexcept {
  if (frame == nullptr) return false;
  for (const Lineage* up = job.parent.get(); up != nullptr; up = up->parent.get()) {
    if (up == frame) return true;
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

BlockedWorker::BlockedWorker(ThreadPoolCore* pool) noexcept
    : pool_(pool != nullptr && current_worker_pool() == pool ? pool : nullptr) {
  if (pool_ != nullptr) pool_->begin_blocked_wait();
}
BlockedWorker::~BlockedWorker() {
  if (pool_ != nullptr) pool_->end_blocked_wait();
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
  job->parent = submitter_lineage(this);
  bool wake_worker = false;
  bool wake_spare = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) throw PoolClosed("crew::ThreadPool: cannot take new work after shutdown()");
    for (std::size_t i = 1; i < copies; ++i) queue_.push_back(job);
    queue_.push_back(job);
    queued_.store(queue_.size(), std::memory_order_relaxed);
    wake_worker = idle_workers_ > 0;
    wake_spare = idle_spares_ > 0 && running_spares_ < blocked_waits_;
    // Kicked under mu_: a helper leaves blocked_helpers_ under mu_ before its wait object dies.
    for (const BlockedHelper& helper : blocked_helpers_) {
      if (descends_from(*job, helper.frame)) helper.wait->kick();
    }
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
      if (queue_.empty()) return;  // stopping_ and drained
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    run_job(*job);
    job.reset();  // release the job's captures before anyone is told it finished
  }
}

// A spare runs queued jobs only while fewer spares run than workers are blocked in timed waits,
// so the pool keeps its width; it parks otherwise, and exits once the pool stops and drains.
void ThreadPoolCore::spare_loop() {
  WorkerScope scope(this);
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_spares_;
    spare_cv_.wait(lock, [this] {
      return (stopping_ && queue_.empty()) || (!queue_.empty() && running_spares_ < blocked_waits_);
    });
    --idle_spares_;
    if (queue_.empty()) return;
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    queued_.store(queue_.size(), std::memory_order_relaxed);
    ++running_spares_;
    lock.unlock();
    run_job(*job);
    job.reset();
    lock.lock();
    --running_spares_;
  }
}

std::shared_ptr<Job> ThreadPoolCore::take_allowed(const Lineage* frame,
                                                  std::span<const void* const> awaited) {
  // Newest first: the waiter's own sub-tasks were queued last, and running them depth-first keeps
  // the number of tasks in flight small.
  for (auto it = queue_.end(); it != queue_.begin();) {
    --it;
    const Job* job = it->get();
    bool allowed = descends_from(*job, frame);
    for (const void* asked : awaited) allowed = allowed || asked == static_cast<const void*>(job);
    if (!allowed) continue;
    std::shared_ptr<Job> taken = std::move(*it);
    queue_.erase(it);
    queued_.store(queue_.size(), std::memory_order_relaxed);
    return taken;
  }
  return nullptr;
}

void ThreadPoolCore::help_until(HelpWait& wait) {
  RunFrame* const frame = t_frame;
  for (;;) {
    if (wait.ready()) return;
    std::shared_ptr<Job> job;
    // Only a job that submitted something can gain sub-tasks while it waits.
    const Lineage* self = frame != nullptr ? frame->self.get() : nullptr;
    bool wake_spare = false;
    {
      std::lock_guard lock(mu_);
      job = take_allowed(self, wait.awaited);
      if (!job) {
        if (self != nullptr) blocked_helpers_.push_back({self, &wait});
        wake_spare = note_blocked_locked();
      }
    }
    if (job) {
      run_job(*job);
      job.reset();
      continue;
    }
    // Blocked with nothing it may run: a spare keeps the pool's width meanwhile (what it waits on
    // runs elsewhere, and the queue may hold other callers' work).
    if (wake_spare) spare_cv_.notify_all();
    wait.block();
    {
      std::lock_guard lock(mu_);
      --blocked_waits_;
      if (self != nullptr) {
        std::erase_if(blocked_helpers_, [&](const BlockedHelper& h) { return h.wait == &wait; });
      }
    }
  }
}

bool ThreadPoolCore::note_blocked_locked() {
  ++blocked_waits_;
  if (idle_spares_ > 0) return true;
  if (spares_.size() < blocked_waits_ && spares_.size() < kMaxSpareThreads) {
    try {
      spares_.emplace_back([this] { spare_loop(); });
    } catch (const std::system_error&) {
      // No thread to spare: the wait still ends when what it waits on is done.
    }
  }
  return false;
}

void ThreadPoolCore::begin_blocked_wait() {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    wake = note_blocked_locked();
  }
  if (wake) spare_cv_.notify_all();
}

void ThreadPoolCore::end_blocked_wait() noexcept {
  std::lock_guard lock(mu_);
  --blocked_waits_;
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
  // Cancelling settles each future, which wakes whoever waits on it (a helper included).
  for (auto& job : dropped) report.tasks_cancelled += job->cancel_queued();
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
  spare_cv_.notify_all();
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
