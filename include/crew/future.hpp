// crew::Future<R>: the result of pool.submit(), and the free functions that wait on several
// futures.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "crew/detail/worker_context.hpp"
#include "crew/errors.hpp"

namespace crew {

// What Future::cancel() achieved.
enum class CancelResult {
  kCancelled,      // the task had not started; it never will, get() throws crew::Cancelled
  kStopRequested,  // the task is running and takes a std::stop_token: stop was requested on it
  kNotStoppable,   // the task is running and takes no std::stop_token: it runs to completion
  kAlreadyDone,    // the task had already finished (or was cancelled before)
};

namespace detail {

// Failures nobody observed: a failed task whose Future was destroyed without get(), or an on_done
// callback that threw. Shared by a pool and its tasks, so it outlives whichever goes first.
class FailureLog {
 public:
  void record(const std::exception_ptr& error) {
    std::lock_guard lock(mu_);
    if (count_++ == 0) first_ = describe_exception(error);
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::string first() const {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  mutable std::mutex mu_;
  std::size_t count_ = 0;  // guarded by mu_
  std::string first_;      // guarded by mu_
};

enum class TaskStatus : int { kPending, kRunning, kSucceeded, kFailed, kCancelled };

// The state a task and its Future share. The result itself lives in State<R>.
class StateBase {
 public:
  // A stop source allocates its shared state: only tasks that take a std::stop_token get one.
  StateBase(ThreadPoolCore* pool, std::shared_ptr<FailureLog> failures, bool stoppable)
      : pool_(pool),
        failures_(std::move(failures)),
        stop_(stoppable ? std::stop_source() : std::stop_source(std::nostopstate)) {}
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;
  virtual ~StateBase() = default;

  bool settled() const noexcept { return status_.load() >= TaskStatus::kSucceeded; }
  TaskStatus status() const noexcept { return status_.load(); }

  // Blocks until settled. From a worker of the owning pool, runs this task (if it has not started)
  // and the waiter's own sub-tasks meanwhile (the helping rule, worker_context.hpp).
  void wait() const { (void)wait_until_steady(std::nullopt); }
  // A timed wait runs no task on the waiter's stack, so it returns by its deadline; a worker that
  // blocks in one hands its place in the pool to a spare thread meanwhile.
  bool wait_until_steady(std::optional<std::chrono::steady_clock::time_point> deadline) const {
    if (settled()) return true;
    const void* const self[] = {job_identity()};
    if (!deadline) {
      wait_helping(
          pool_, mu_, cv_, [this] { return settled(); }, self, job_);
      return true;
    }
    BlockedWorker blocked(pool_, self);
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, *deadline, [this] { return settled(); });
  }

  // The queued job that runs this task (for the helping rule), or nullptr.
  const void* job_identity() const noexcept { return static_cast<const void*>(job_); }

  CancelResult cancel() {
    TaskStatus expected = TaskStatus::kPending;
    if (status_.compare_exchange_strong(expected, TaskStatus::kCancelled)) {
      settle_cancelled();
      return CancelResult::kCancelled;
    }
    if (expected == TaskStatus::kRunning) {
      if (stop_.stop_possible()) {
        stop_.request_stop();
        return CancelResult::kStopRequested;
      }
      return CancelResult::kNotStoppable;
    }
    return CancelResult::kAlreadyDone;
  }

  // Runs callback once the task settles: at once (on this thread) if it already has, else on the
  // thread that settles it.
  void on_done(std::function<void()> callback) {
    {
      std::lock_guard lock(mu_);
      if (!settled()) {
        callbacks_.push_back(std::move(callback));
        return;
      }
    }
    run_callback(callback);
  }

  // The Future went away. A failure nobody will ever see is recorded instead of lost.
  void detach() noexcept {
    std::exception_ptr unseen;
    {
      std::lock_guard lock(mu_);
      detached_ = true;
      if (status_.load() == TaskStatus::kFailed && !retrieved_) unseen = error_;
    }
    if (unseen && failures_) failures_->record(unseen);
  }

  // Marks the result as taken. Throws crew::Error when it was taken before.
  void mark_retrieved() {
    std::lock_guard lock(mu_);
    if (retrieved_) throw Error("crew::Future::get() called twice: the result was already taken");
    retrieved_ = true;
  }

  // Throws what get() must throw for a failed or cancelled task; returns for a success. The error
  // is moved out: the thread that catches it then holds its last reference, so a worker dropping
  // the state later never frees an exception the caller is still reading.
  void rethrow_if_unsuccessful() {
    switch (status_.load()) {
      case TaskStatus::kFailed: {
        std::exception_ptr error;
        {
          std::lock_guard lock(mu_);
          error = std::move(error_);
        }
        std::rethrow_exception(error);
      }
      case TaskStatus::kCancelled:
        throw Cancelled("task was cancelled before it ran");
      default:
        return;
    }
  }

  // Called once by the job that runs this task, before it is queued.
  void set_job(Job* job) noexcept { job_ = job; }

  // Runner side: pending → running. False when the task was cancelled first.
  bool try_start() noexcept {
    TaskStatus expected = TaskStatus::kPending;
    return status_.compare_exchange_strong(expected, TaskStatus::kRunning);
  }
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }

 protected:
  // Result (if any) must be stored before calling; status is published under mu_ so waiters that
  // see it settled also see the result.
  void settle(TaskStatus final_status, std::exception_ptr error) {
    std::vector<std::function<void()>> callbacks;
    bool unseen = false;
    {
      std::lock_guard lock(mu_);
      error_ = std::move(error);
      status_.store(final_status);
      callbacks.swap(callbacks_);
      unseen = final_status == TaskStatus::kFailed && detached_;
    }
    cv_.notify_all();
    if (unseen && failures_) failures_->record(error_);  // detached: no get() can race this read
    for (auto& callback : callbacks) run_callback(callback);
  }

 private:
  void settle_cancelled() {
    // status_ already holds kCancelled (set by the CAS that won the race against try_start).
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(mu_);
      callbacks.swap(callbacks_);
    }
    cv_.notify_all();
    for (auto& callback : callbacks) run_callback(callback);
  }

  void run_callback(const std::function<void()>& callback) noexcept {
    try {
      callback();
    } catch (...) {
      // A throwing callback has no caller to throw to: count it like an unobserved failure.
      if (failures_) failures_->record(std::current_exception());
    }
  }

  ThreadPoolCore* const pool_;  // never dereferenced except by a worker of that pool
  Job* job_ = nullptr;          // the job that runs this task (a waiting worker may claim it)
  std::shared_ptr<FailureLog> failures_;
  std::stop_source stop_;
  std::atomic<TaskStatus> status_{TaskStatus::kPending};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::exception_ptr error_;                      // guarded by mu_
  std::vector<std::function<void()>> callbacks_;  // guarded by mu_
  bool detached_ = false;                         // guarded by mu_
  bool retrieved_ = false;                        // guarded by mu_
};

template <class R>
class State : public StateBase {
 public:
  using StateBase::StateBase;

  template <class Fn>
  void run_and_settle(Fn&& fn) noexcept {
    std::exception_ptr error;
    try {
      if constexpr (std::is_void_v<R>) {
        std::forward<Fn>(fn)();
      } else {
        value_.emplace(std::forward<Fn>(fn)());
      }
    } catch (...) {
      error = std::current_exception();
    }
    // Settled only after the catch block has ended: the waiter may free the exception as soon as it
    // sees the result, so this thread must no longer hold the in-flight reference by then.
    if (error) {
      settle(TaskStatus::kFailed, std::move(error));
    } else {
      settle(TaskStatus::kSucceeded, nullptr);
    }
  }

  R take() {
    if constexpr (!std::is_void_v<R>) return std::move(*value_);
  }

 private:
  std::conditional_t<std::is_void_v<R>, std::monostate, std::optional<R>> value_;
};

}  // namespace detail

template <class R>
class Future;

namespace detail {
// The job behind a future, for the helping rule; nullptr for an invalid future.
template <class R>
const void* job_identity(const Future<R>& future) noexcept {
  return future.state_ ? future.state_->job_identity() : nullptr;
}
template <class R>
std::shared_ptr<const StateBase> job_state(const Future<R>& future) noexcept {
  return future.state_;
}

// now + timeout, saturated at 100 years: a huge timeout (hours::max()) must wait, not overflow
// into the past.
template <class Clock, class Rep, class Period>
typename Clock::time_point saturated_deadline(typename Clock::time_point now,
                                              std::chrono::duration<Rep, Period> timeout) {
  constexpr auto kLongest = std::chrono::hours(24 * 365 * 100);
  if (timeout <= std::chrono::duration<Rep, Period>::zero()) return now;
  if (timeout >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(kLongest)) {
    return now + std::chrono::duration_cast<typename Clock::duration>(kLongest);
  }
  return now + std::chrono::duration_cast<typename Clock::duration>(timeout);
}
}  // namespace detail

// The result of a task submitted to a pool. Move-only. Destroying a Future never blocks and never
// cancels its task (unlike std::async's futures).
// Thread safety: one Future must not be used from two threads at once without synchronization;
// different Futures are independent.
template <class R>
class [[nodiscard]] Future {
 public:
  Future() = default;
  explicit Future(std::shared_ptr<detail::State<R>> state) : state_(std::move(state)) {}
  Future(Future&&) noexcept = default;
  Future& operator=(Future&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~Future() { release(); }

  // False for a default-constructed or moved-from Future.
  bool valid() const noexcept { return state_ != nullptr; }

  // The task's result. Blocks until the task settles; a worker of the same pool runs this task (if
  // not started) and its own sub-tasks while it waits, never unrelated ones (thread_pool.hpp), so
  // a task may wait on its sub-tasks without deadlock.
  // Throws: the task's own exception object; crew::Cancelled if it was cancelled before it ran;
  // crew::Error if get() was already called (the result is moved out once, like std::future).
  R get() {
    check_valid();
    state_->wait();
    state_->mark_retrieved();
    state_->rethrow_if_unsuccessful();
    return state_->take();
  }

  // Blocks until the task settles (succeeded, failed or cancelled). Throws: nothing of the task's.
  void wait() const {
    check_valid();
    state_->wait();
  }
  // Blocks at most `timeout` and runs no other task meanwhile, so it returns by the deadline (from
  // a worker, a spare thread stands in while it blocks). Returns done().
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    check_valid();
    return state_->wait_until_steady(detail::saturated_deadline<std::chrono::steady_clock>(
        std::chrono::steady_clock::now(), timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    check_valid();
    // On the steady clock: what is left until `deadline` (zero if it passed; saturated if huge).
    const auto now = Clock::now();
    const auto left = deadline <= now                               ? Clock::duration::zero()
                      : deadline - now < Clock::duration::max() / 2 ? deadline - now
                                                                    : Clock::duration::max() / 2;
    return state_->wait_until_steady(detail::saturated_deadline<std::chrono::steady_clock>(
        std::chrono::steady_clock::now(), left));
  }

  // True once the task succeeded, failed or was cancelled. Never blocks.
  bool done() const noexcept { return state_ && state_->settled(); }
  bool cancelled() const noexcept {
    return state_ && state_->status() == detail::TaskStatus::kCancelled;
  }
  bool failed() const noexcept { return state_ && state_->status() == detail::TaskStatus::kFailed; }

  // Cancels a pending task; asks a running one to stop through its std::stop_token if it takes one.
  // Returns which happened. Never blocks.
  CancelResult cancel() {
    check_valid();
    return state_->cancel();
  }

  // Runs callback() once the task settles: at once on this thread if it already has, else on the
  // thread that settles it (a worker). A callback that throws is counted as an unobserved failure.
  void on_done(std::function<void()> callback) {
    check_valid();
    state_->on_done(std::move(callback));
  }

 private:
  template <class T>
  friend const void* detail::job_identity(const Future<T>& future) noexcept;
  template <class T>
  friend std::shared_ptr<const detail::StateBase> detail::job_state(
      const Future<T>& future) noexcept;

  void check_valid() const {
    if (!state_) throw Error("crew::Future has no state (default-constructed or moved from)");
  }
  void release() noexcept {
    if (state_) state_->detach();
    state_.reset();
  }
  std::shared_ptr<detail::State<R>> state_;
};

namespace detail {
// Registers a wake-up on every future, shared by as_completed / wait_any.
class CompletionQueue {
 public:
  void push(std::size_t index) {
    {
      std::lock_guard lock(mu_);
      ready_.push_back(index);
    }
    cv_.notify_all();
  }
  // Blocks until an index is ready; a worker of `pool` helps while waiting, with the tasks in
  // `awaited` and its own sub-tasks.
  std::size_t pop(ThreadPoolCore* pool, std::span<const void* const> awaited) {
    wait_helping(
        pool, mu_, cv_, [this] { return next_ < ready_.size(); }, awaited);
    std::lock_guard lock(mu_);  // only this consumer pops: still ready
    return ready_[next_++];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::size_t> ready_;  // guarded by mu_
  std::size_t next_ = 0;            // guarded by mu_
};
}  // namespace detail

// Yields the futures in the order they settle (like Python's concurrent.futures.as_completed).
// Yields references into `futures`, which must outlive the loop. Blocks in operator++ until the
// next one settles.
template <class R>
class AsCompleted {
 public:
  explicit AsCompleted(std::vector<Future<R>>& futures)
      : futures_(&futures), queue_(std::make_shared<detail::CompletionQueue>()) {
    for (std::size_t i = 0; i < futures.size(); ++i) {
      futures[i].on_done([queue = queue_, i] { queue->push(i); });
      jobs_.push_back(detail::job_identity(futures[i]));
      // Held so that no identity in jobs_ can be reused by another task once the caller drops a
      // future it was given: a waiter would then run a stranger's task.
      states_.push_back(detail::job_state(futures[i]));
    }
  }

  class iterator {
   public:
    using value_type = Future<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    Future<R>& operator*() const { return (*owner_->futures_)[current_]; }
    Future<R>* operator->() const { return &**this; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.owner_ == nullptr;
    }

   private:
    void advance() {
      if (owner_ == nullptr) return;
      if (owner_->yielded_ == owner_->futures_->size()) {
        owner_ = nullptr;
        return;
      }
      current_ = owner_->queue_->pop(owner_->pool_hint(), owner_->jobs_);
      ++owner_->yielded_;
    }
    AsCompleted* owner_ = nullptr;
    std::size_t current_ = 0;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const { return {}; }

 private:
  detail::ThreadPoolCore* pool_hint() const { return detail::current_worker_pool(); }
  std::vector<Future<R>>* futures_;
  std::shared_ptr<detail::CompletionQueue> queue_;
  std::vector<const void*> jobs_;  // the futures' jobs, which a waiting worker may run
  std::vector<std::shared_ptr<const detail::StateBase>> states_;  // keeps jobs_ unique
  std::size_t yielded_ = 0;
};

// Futures in completion order: `for (auto& f : crew::as_completed(futures)) use(f.get());`
// Blocks: each step blocks until the next future settles. Throws: crew::Error for an invalid
// future.
template <class R>
AsCompleted<R> as_completed(std::vector<Future<R>>& futures) {
  return AsCompleted<R>(futures);
}

// Blocks until at least one future has settled; returns the index of one that has.
// Throws: std::invalid_argument when `futures` is empty.
template <class R>
std::size_t wait_any(std::vector<Future<R>>& futures) {
  if (futures.empty()) throw std::invalid_argument("crew::wait_any: futures is empty");
  for (std::size_t i = 0; i < futures.size(); ++i) {
    if (futures[i].done()) return i;
  }
  auto queue = std::make_shared<detail::CompletionQueue>();
  std::vector<const void*> jobs;
  for (std::size_t i = 0; i < futures.size(); ++i) {
    futures[i].on_done([queue, i] { queue->push(i); });
    jobs.push_back(detail::job_identity(futures[i]));
  }
  return queue->pop(detail::current_worker_pool(), jobs);
}

// Blocks until every future has settled (none is consumed: get() still works afterwards).
template <class R>
void wait_all(const std::vector<Future<R>>& futures) {
  for (const auto& future : futures) future.wait();
}

}  // namespace crew
