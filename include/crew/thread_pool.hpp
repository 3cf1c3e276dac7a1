// crew::ThreadPool: run callables on a fixed crew of threads. C++ has no GIL, so threads suit
// IO-bound and CPU-bound work alike (the article's two jobs).
//
//   crew::ThreadPool pool({.workers = 4});
//   crew::Future<long> f = pool.submit(is_prime, 97L);
//   std::vector<long> v = pool.map(is_prime, numbers);
//   for (long r : pool.imap(is_prime, numbers)) {}
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "crew/detail/map_run.hpp"
#include "crew/detail/thread_pool_core.hpp"
#include "crew/errors.hpp"
#include "crew/future.hpp"
#include "crew/options.hpp"
#include "crew/outcome.hpp"

namespace crew {

namespace detail {

template <class F, class... Args>
concept TakesStopToken = std::invocable<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>;

template <class F, class... Args>
struct SubmitResult {
  using type = std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>>;
};
template <class F, class... Args>
requires TakesStopToken<F, Args...>
struct SubmitResult<F, Args...> {
  using type = std::remove_cvref_t<
      std::invoke_result_t<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>>;
};

// One submitted task: its shared state (what the Future sees) and the queued job in one allocation.
template <class R, bool kStoppable, class Fn, class... Args>
class TaskJob final : public State<R>, public Job {
 public:
  TaskJob(ThreadPoolCore* pool, std::shared_ptr<FailureLog> failures, Fn fn, Args... args)
      : State<R>(pool, std::move(failures), kStoppable),
        call_(std::in_place, std::move(fn), std::move(args)...) {
    this->set_job(this);
    claim_once = true;
  }

  void run() noexcept override {
    if (this->try_start()) {
      this->run_and_settle([this]() -> R {
        return std::apply(
            // Like std::thread: the decayed copies are passed as rvalues; a task runs once.
            [this](Fn& fn, Args&... args) -> R {
              if constexpr (kStoppable) {
                return std::invoke(std::move(fn), this->stop_token(), std::move(args)...);
              } else {
                return std::invoke(std::move(fn), std::move(args)...);
              }
            },
            *call_);
      });
    }
    call_.reset();  // free captured arguments now, not when the last Future goes away
  }
  std::size_t cancel_queued() noexcept override {
    const bool cancelled = this->cancel() == CancelResult::kCancelled;
    call_.reset();
    return cancelled ? 1 : 0;
  }

 private:
  std::optional<std::tuple<Fn, Args...>> call_;
};

template <class Range>
concept BulkMappable = std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>;

template <class F, class Range>
using MapResult = std::remove_cvref_t<
    std::invoke_result_t<const std::decay_t<F>&, std::ranges::range_reference_t<Range>>>;

// Bulk path needs a default-constructible result, and vector<bool> packs bits: neighbours written
// by two threads would race. Those take the stream path, whose chunks each own their vector.
template <class R>
concept BulkStorable = std::is_void_v<R> ||
    (std::default_initializable<R> && !std::same_as<R, bool>);

template <class F, class Item>
void check_map_callable() {
  static_assert(std::is_invocable_v<const std::decay_t<F>&, Item>,
                "crew: the map function must be callable as a const object with one input item "
                "(workers call it concurrently; a mutable lambda would race with itself)");
}

}  // namespace detail

// The lazy result of imap / imap_unordered: an input range to consume once with a range-for.
// Leaving the loop early (or destroying the range) cancels chunks not yet started and blocks until
// the running ones finish, so the input they read can go away safely.
template <class R, detail::MapMode Mode>
class [[nodiscard]] ImapRange {
 public:
  using Source = detail::StreamSource<R, Mode>;

  explicit ImapRange(std::shared_ptr<Source> source) : source_(std::move(source)) {}
  ImapRange(ImapRange&&) noexcept = default;
  ImapRange& operator=(ImapRange&&) = delete;
  ImapRange(const ImapRange&) = delete;
  ~ImapRange() {
    if (source_) source_->close();
  }

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ImapRange* owner) : owner_(owner) { owner_->advance(); }
    R& operator*() const { return owner_->current(); }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { owner_->advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    bool at_end() const { return owner_ == nullptr || owner_->finished_; }
    ImapRange* owner_ = nullptr;
  };

  // Blocks until the first result is available. Throws as advancing does (see imap).
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  R& current() {
    if constexpr (Mode == detail::MapMode::kOutcomes) {
      return chunk_->results[offset_].value();
    } else {
      return chunk_->results[offset_];
    }
  }

  void advance() {
    if (finished_) return;
    if (chunk_) ++offset_;
    for (;;) {
      if (chunk_) {
        if constexpr (Mode == detail::MapMode::kOutcomes) {
          // imap_unordered: skip failed items, remember the lowest-position failure for the end.
          while (offset_ < chunk_->results.size() && !chunk_->results[offset_].has_value()) {
            const std::size_t position = chunk_->first + offset_;
            if (position < deferred_position_) {
              deferred_position_ = position;
              deferred_error_ = chunk_->results[offset_].error();
            }
            ++offset_;
          }
        }
        if (offset_ < chunk_->results.size()) return;
        if (chunk_->error) {
          finished_ = true;
          std::rethrow_exception(std::exchange(chunk_->error, nullptr));
        }
      }
      chunk_ = source_->next();
      offset_ = 0;
      if (!chunk_) {
        finished_ = true;
        if (deferred_error_) std::rethrow_exception(deferred_error_);
        return;
      }
      if (chunk_->skipped) {
        finished_ = true;
        throw Cancelled(detail::cancelled_message("imap", source_->chunks_consumed() - 1,
                                                  source_->chunks_total_if_known()));
      }
    }
  }

  std::shared_ptr<Source> source_;
  std::shared_ptr<detail::StreamChunk<R, Mode>> chunk_;
  std::size_t offset_ = 0;
  bool finished_ = false;
  std::size_t deferred_position_ = detail::kNoFailure;
  std::exception_ptr deferred_error_;
};

// A fixed crew of worker threads with one FIFO queue.
//
// Thread safety: every method may be called from any thread, concurrently (several threads may map
// on one pool at once). A task may itself submit to or map on its own pool and wait for the result,
// at any depth and with any number of workers, one included.
//
// The helping rule: a worker that waits without a deadline (Future::get/wait, map, imap,
// as_completed, wait_any) runs meanwhile only what it waits on — the task(s) or map chunks it
// names, if not started, and the sub-tasks those submit — never a sibling or an unrelated task, so
// nothing foreign runs inside a lock the waiter holds (oneTBB's task isolation, on every wait). A
// timed wait (wait_for/wait_until) runs nothing and returns by its deadline; while it blocks, a
// spare thread runs what it waits on. After shutdown(), running tasks may still submit and map.
// Limits: nested waits run on the waiter's stack (depth costs stack); a wait on another pool's
// future blocks the worker plainly.
class ThreadPool {
 public:
  // Starts the workers. Blocks: until the threads exist.
  // Throws: std::invalid_argument naming "workers" unless 1 ≤ workers ≤ kMaxWorkers;
  // std::system_error when the system refuses a thread.
  explicit ThreadPool(PoolOptions options = {});
  // Same as shutdown({.wait = true}); reports unobserved failures through the log hook.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  static constexpr std::size_t kMaxWorkers = 4096;

  std::size_t worker_count() const noexcept { return core_->worker_count(); }

  // Queues f(args...) and returns its Future. Arguments are copied or moved into the task. If f
  // accepts a std::stop_token as its first parameter, it receives one that Future::cancel() trips.
  // Blocks: never. Throws: crew::PoolClosed after shutdown().
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) -> Future<typename detail::SubmitResult<F, Args...>::type> {
    using R = typename detail::SubmitResult<F, Args...>::type;
    constexpr bool kStoppable = detail::TakesStopToken<F, Args...>;
    using Job = detail::TaskJob<R, kStoppable, std::decay_t<F>, std::decay_t<Args>...>;
    auto job = std::make_shared<Job>(core_.get(), core_->failures(), std::forward<F>(f),
                                     std::forward<Args>(args)...);
    core_->enqueue(job);
    return Future<R>(std::move(job));
  }

  // Applies f to every item; returns the results in input order (Python's Executor.map, eager
  // result, lazy input). f is called concurrently, as a const object.
  // Blocks: until every item ran, or until a failure's in-flight chunks settled.
  // Throws: the failure of the lowest failing input position (chunks after it that had not started
  // are skipped); crew::Cancelled when options.stop fired; std::invalid_argument for chunksize or
  // window 0; crew::PoolClosed after shutdown().
  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& input, const MapOptions& options = {}) {
    using R = detail::MapResult<F, Range>;
    detail::check_map_callable<F, std::ranges::range_reference_t<Range>>();
    if constexpr (detail::BulkMappable<Range> && detail::BulkStorable<R>) {
      auto out = detail::run_bulk<R, detail::MapMode::kFailFast>(*core_, f, input, options, "map");
      if constexpr (std::is_void_v<R>) {
        return;
      } else {
        return out;
      }
    } else {
      auto source = detail::make_stream<R, detail::MapMode::kFailFast>(
          *core_, std::decay_t<F>(std::forward<F>(f)), std::forward<Range>(input), true, options);
      detail::StreamCloser closer(source);
      std::vector<detail::Slot<R>> out;
      while (auto chunk = source->next()) {
        if (chunk->skipped) {
          throw Cancelled(detail::cancelled_message("map", source->chunks_consumed() - 1,
                                                    source->chunks_total_if_known()));
        }
        out.insert(out.end(), std::make_move_iterator(chunk->results.begin()),
                   std::make_move_iterator(chunk->results.end()));
        if (chunk->error) std::rethrow_exception(std::exchange(chunk->error, nullptr));
      }
      if constexpr (std::is_void_v<R>) {
        return;
      } else {
        return out;
      }
    }
  }

  // map over a range of tuples, unpacking each: f(std::get<0>(t), std::get<1>(t), …).
  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& input, const MapOptions& options = {}) {
    return map(unpacking(std::forward<F>(f)), std::forward<Range>(input), options);
  }

  // One Outcome per item, in input order: a failure never discards the other results (what
  // Python's map lacks). Blocks: until every item ran. Throws: only crew::Cancelled (options.stop),
  // std::invalid_argument and crew::PoolClosed — never a task's exception.
  template <class F, std::ranges::input_range Range>
  auto map_outcomes(F&& f, Range&& input, const MapOptions& options = {})
      -> std::vector<Outcome<detail::MapResult<F, Range>>> {
    using R = detail::MapResult<F, Range>;
    detail::check_map_callable<F, std::ranges::range_reference_t<Range>>();
    if constexpr (detail::BulkMappable<Range>) {
      return detail::run_bulk<R, detail::MapMode::kOutcomes>(*core_, f, input, options,
                                                             "map_outcomes");
    } else {
      auto source = detail::make_stream<R, detail::MapMode::kOutcomes>(
          *core_, std::decay_t<F>(std::forward<F>(f)), std::forward<Range>(input), true, options);
      detail::StreamCloser closer(source);
      std::vector<Outcome<R>> out;
      while (auto chunk = source->next()) {
        if (chunk->skipped) {
          throw Cancelled(detail::cancelled_message("map_outcomes", source->chunks_consumed() - 1,
                                                    source->chunks_total_if_known()));
        }
        out.insert(out.end(), std::make_move_iterator(chunk->results.begin()),
                   std::make_move_iterator(chunk->results.end()));
      }
      return out;
    }
  }

  // Lazy, ordered map: results come in input order as the loop consumes them; input is pulled only
  // as the bounded window allows (options.window chunks not yet consumed). An rvalue input is owned
  // by the returned range; an lvalue input must outlive it.
  // Blocks: in begin() and ++ until the next result is ready.
  // Throws (from begin() or ++): results up to the lowest failing position are yielded, then that
  // failure is thrown; crew::Cancelled when options.stop fired; crew::PoolClosed if the pool shuts
  // down before the input is exhausted.
  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& input, const MapOptions& options = {})
      -> ImapRange<detail::MapResult<F, Range>, detail::MapMode::kFailFast> {
    using R = detail::MapResult<F, Range>;
    static_assert(!std::is_void_v<R>, "crew: imap needs a function that returns a value");
    detail::check_map_callable<F, std::ranges::range_reference_t<Range>>();
    return ImapRange<R, detail::MapMode::kFailFast>(
        detail::make_stream<R, detail::MapMode::kFailFast>(
            *core_, std::decay_t<F>(std::forward<F>(f)), std::forward<Range>(input), true,
            options));
  }

  // Lazy map in completion order (per chunk; items within a chunk keep their order). A failing item
  // does not stop the others: every other item's result is yielded, then the lowest-position
  // failure is thrown at the end of the loop.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& input, const MapOptions& options = {})
      -> ImapRange<detail::MapResult<F, Range>, detail::MapMode::kOutcomes> {
    using R = detail::MapResult<F, Range>;
    static_assert(!std::is_void_v<R>, "crew: imap_unordered needs a function that returns a value");
    detail::check_map_callable<F, std::ranges::range_reference_t<Range>>();
    return ImapRange<R, detail::MapMode::kOutcomes>(
        detail::make_stream<R, detail::MapMode::kOutcomes>(
            *core_, std::decay_t<F>(std::forward<F>(f)), std::forward<Range>(input), false,
            options));
  }

  // Stops taking work from outside (tasks still running may submit and map: their sub-tasks are
  // part of the accepted work). With wait, blocks until queued tasks ran and workers exited (from
  // inside a task it only closes: a worker cannot join itself). With cancel_pending, queued tasks
  // are cancelled (their get() throws crew::Cancelled). Idempotent. Throws: nothing.
  ShutdownReport shutdown(const ShutdownOptions& options = {});

 private:
  template <class F>
  static auto unpacking(F&& f) {
    return [fn = std::decay_t<F>(std::forward<F>(f))](auto&& tuple) -> decltype(auto) {
      return std::apply(fn, std::forward<decltype(tuple)>(tuple));
    };
  }

  std::unique_ptr<detail::ThreadPoolCore> core_;
};

}  // namespace crew
