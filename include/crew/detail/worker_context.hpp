// Which pool, if any, the calling thread works for, and how a worker waits on work of its own pool
// without deadlocking it or running work it did not ask for.
//
// The helping rule (documented for users in thread_pool.hpp): a worker that waits without a
// deadline runs, meanwhile, only what it waits on — the task (or the map's chunks) it names, if
// not started, and their sub-tasks — never its siblings or strangers. A timed wait runs nothing: it
// blocks, and a spare thread runs what it waits on.
#pragma once

#include <condition_variable>
#include <mutex>
#include <span>
#include <utility>

namespace crew::detail {

class ThreadPoolCore;
class Job;

// The pool whose worker is the calling thread, or nullptr. Thread safety: reads a thread_local.
ThreadPoolCore* current_worker_pool() noexcept;

// What a worker waits for. The pool calls ready() and block() from the waiting thread, and kick()
// under its queue lock from a thread that just queued a task the waiter may run.
class HelpWait {
 public:
  virtual ~HelpWait() = default;
  // Cheap; may take the waited object's own lock, never the pool's.
  virtual bool ready() = 0;
  // Blocks until ready() or a kick() since the last block() returned.
  virtual void block() = 0;
  virtual void kick() noexcept = 0;

  // What the waiter waits on, by the identities its jobs carry (Job::group): a future's task, a
  // map run, as_completed's futures. It may run those jobs and their sub-tasks, nothing else.
  std::span<const void* const> awaited;
  // A queued task the waiter may claim and run at once, without scanning the queue for it.
  Job* claimable = nullptr;
};

// A HelpWait over an object that already has a mutex, a condition variable notified whenever its
// condition may have changed, and a predicate to be evaluated under that mutex.
template <class Mutex, class Ready>
class CvHelpWait final : public HelpWait {
 public:
  CvHelpWait(Mutex& mu, std::condition_variable& cv, Ready ready_locked)
      : mu_(mu), cv_(cv), ready_locked_(std::move(ready_locked)) {}
  bool ready() override {
    std::lock_guard lock(mu_);
    return ready_locked_();
  }
  void block() override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return kicked_ || ready_locked_(); });
    kicked_ = false;
  }
  void kick() noexcept override {
    {
      std::lock_guard lock(mu_);
      kicked_ = true;
    }
    cv_.notify_all();
  }

 private:
  Mutex& mu_;
  std::condition_variable& cv_;
  Ready ready_locked_;
  bool kicked_ = false;  // guarded by mu_
};

// Called by a worker of `pool`: runs the tasks the helping rule allows until wait.ready(), blocking
// in wait.block() while there are none.
void help_until(ThreadPoolCore* pool, HelpWait& wait);

// Marks a worker of `pool` as blocked in a timed wait for the object's lifetime: it runs nothing
// itself, so spare threads run the work it waits on (`awaited` and its sub-tasks). Does nothing on
// other threads.
class BlockedWorker {
 public:
  BlockedWorker(ThreadPoolCore* pool, std::span<const void* const> awaited) noexcept;
  ~BlockedWorker();
  BlockedWorker(const BlockedWorker&) = delete;
  BlockedWorker& operator=(const BlockedWorker&) = delete;

 private:
  ThreadPoolCore* pool_;
  std::span<const void* const> awaited_;
};

// Waits on mu/cv until ready_locked() (evaluated under mu). From a worker of `pool`, helps as
// help_until() does.
template <class Mutex, class Ready>
void wait_helping(ThreadPoolCore* pool, Mutex& mu, std::condition_variable& cv, Ready ready_locked,
                  std::span<const void* const> awaited = {}, Job* claimable = nullptr) {
  if (pool != nullptr && current_worker_pool() == pool) {
    CvHelpWait<Mutex, Ready> wait(mu, cv, ready_locked);
    wait.awaited = awaited;
    wait.claimable = claimable;
    help_until(pool, wait);
    return;
  }
  std::unique_lock lock(mu);
  cv.wait(lock, ready_locked);
}

}  // namespace crew::detail
