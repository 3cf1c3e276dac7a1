// The machinery behind map, imap, imap_unordered, starmap and map_outcomes.
//
// Two paths:
//  * BulkMapJob — for map/map_outcomes over a sized random-access range. The output is allocated
//    up front and min(workers, chunks) copies of one runner job claim chunks with one atomic
//    increment each: no per-chunk allocation, no caller wake-up per chunk.
//  * StreamRun — for everything lazy (imap, imap_unordered, and map over other ranges). The
//  caller's
//    thread pulls input, submits at most `window` chunks that are not yet consumed, and takes
//    completed chunks in input order (or completion order), so memory stays bounded whatever the
//    input's length.
//
// Failure rule (both paths): in fail-fast mode a chunk whose first position lies after the lowest
// failing position seen so far is skipped; chunks already running settle; the caller throws the
// failure of the lowest position. Since chunks are handed out in input order, every chunk before a
// failure has started, so "lowest" is exact.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "crew/detail/thread_pool_core.hpp"
#include "crew/errors.hpp"
#include "crew/options.hpp"
#include "crew/outcome.hpp"

namespace crew::detail {

inline constexpr std::size_t kNoFailure = std::numeric_limits<std::size_t>::max();
inline constexpr std::size_t kAutoChunksPerWorker = 64;
inline constexpr std::size_t kDefaultWindowPerWorker = 4;
// Adaptive chunks (input of unknown size) keep doubling while a chunk takes less than this.
inline constexpr std::chrono::microseconds kAdaptiveChunkTarget{1000};

// What a task returning R stores per item: R itself, or an empty placeholder for void.
template <class R>
using Slot = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

enum class MapMode {
  kFailFast,  // stop at the first failure; the caller throws the lowest-position failure
  kOutcomes,  // every item gets an Outcome; failures never stop the run
};

template <class R, MapMode Mode>
using Element = std::conditional_t<Mode == MapMode::kOutcomes, Outcome<R>, Slot<R>>;

// Calls fn(item) and stores the item's result as Element.
template <class R, MapMode Mode, class Fn, class Item>
Element<R, Mode> call_item(const Fn& fn, Item&& item) {
  if constexpr (Mode == MapMode::kOutcomes) {
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(fn, std::forward<Item>(item));
        return Outcome<void>::success();
      } else {
        return Outcome<R>::success(std::invoke(fn, std::forward<Item>(item)));
      }
    } catch (...) {
      return Outcome<R>::failure(std::current_exception());
    }
  } else if constexpr (std::is_void_v<R>) {
    std::invoke(fn, std::forward<Item>(item));
    return {};
  } else {
    return std::invoke(fn, std::forward<Item>(item));
  }
}

// Asks for transparent huge pages on a large block about to be written (a map's result vector):
// on a VM where every 4 KiB page fault costs microseconds, 2 MiB pages cut the faults of an 80 MB
// result 512-fold. Only where the kernel leaves THP to madvise; harmless elsewhere.
// Throws: nothing.
void advise_huge_pages(void* data, std::size_t bytes) noexcept;

inline std::size_t validated_chunksize(const MapOptions& options) {
  if (options.chunksize.value_or(1) == 0) {
    throw std::invalid_argument(
        "crew: chunksize must be >= 1, got 0 (leave it unset for automatic)");
  }
  if (options.window.value_or(1) == 0) {
    throw std::invalid_argument("crew: window must be >= 1 chunk in flight, got 0");
  }
  return options.chunksize.value_or(0);
}

// ⌈a / b⌉ for b ≥ 1, without the wrap-around of (a + b - 1) / b when b is near SIZE_MAX (a user's
// chunksize can be anything).
constexpr std::size_t ceil_div(std::size_t a, std::size_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

// Reserve at most this many items ahead for a chunk whose final size is not known yet: a huge
// chunksize must not turn into a huge allocation.
inline constexpr std::size_t kMaxReserveAhead = 4096;

// Auto chunk size for `size` items: ~64 chunks per worker, so uneven costs cannot idle a worker.
inline std::size_t auto_chunksize(std::size_t size, std::size_t workers) {
  const std::size_t chunks = std::max<std::size_t>(1, workers) * kAutoChunksPerWorker;
  return std::clamp<std::size_t>((size + chunks - 1) / chunks, 1, kMaxAutoChunksize);
}

// The lowest failing input position seen so far, and its error.
class FailureTracker {
 public:
  void record(std::size_t position, std::exception_ptr error) {
    std::lock_guard lock(mu_);
    if (position < lowest_.load()) {
      error_ = std::move(error);
      lowest_.store(position);
    }
  }
  std::size_t lowest() const noexcept { return lowest_.load(); }
  bool any() const noexcept { return lowest() != kNoFailure; }
  // Moves the error out, so the caller's thread holds its last reference (see
  // StateBase::rethrow_if_unsuccessful for why).
  std::exception_ptr take_error() {
    std::lock_guard lock(mu_);
    return std::move(error_);
  }

 private:
  mutable std::mutex mu_;
  std::atomic<std::size_t> lowest_{kNoFailure};  // written under mu_, read without
  std::exception_ptr error_;                     // guarded by mu_
};

// Serializes the user's progress callback.
class ProgressReporter {
 public:
  ProgressReporter(std::function<void(std::size_t, std::size_t)> callback, std::size_t total)
      : callback_(std::move(callback)), total_(total) {}
  void add(std::size_t items) {
    if (!callback_) return;
    std::lock_guard lock(mu_);
    done_ += items;
    callback_(done_, total_);
  }

 private:
  std::function<void(std::size_t, std::size_t)> callback_;
  std::size_t total_;
  std::mutex mu_;
  std::size_t done_ = 0;  // guarded by mu_
};

inline std::string cancelled_message(const char* what, std::size_t chunks_done,
                                     std::size_t chunks_total) {
  std::string text = std::string(what) + " cancelled: " + std::to_string(chunks_done);
  if (chunks_total != 0) text += " of " + std::to_string(chunks_total);
  return text + " chunks done";
}

// ---------------------------------------------------------------------------------------------
// Bulk path.

template <class R, MapMode Mode, class Fn, class Range>
class BulkMapJob final : public Job {
 public:
  using Out = Element<R, Mode>;

  BulkMapJob(const Fn& fn, Range& input, std::size_t size, std::size_t chunksize,
             std::size_t runners, const MapOptions& options, Out* out)
      : fn_(fn),
        input_(input),
        size_(size),
        chunksize_(chunksize),
        chunk_count_(ceil_div(size, chunksize)),
        stop_(options.stop),
        progress_(options.on_progress, size),
        out_(out),
        runners_left_(runners) {}

  std::size_t chunk_count() const noexcept { return chunk_count_; }

  void run() noexcept override {
    run_chunks();
    runner_finished();
  }
  std::size_t cancel_queued() noexcept override {
    cancelled_.store(true);
    runner_finished();
    return 0;
  }

  // Blocks until every runner copy has run or been cancelled. A worker of `pool` takes part.
  void wait(ThreadPoolCore* pool) {
    const void* const self[] = {static_cast<const Job*>(this)};
    wait_helping(
        pool, done_mu_, done_cv_, [this] { return runners_left_.load() == 0; }, self);
  }

  // After wait(): throws the lowest failure (fail-fast) or crew::Cancelled if chunks were skipped.
  void rethrow_if_incomplete(const char* what) {
    if (failures_.any()) std::rethrow_exception(failures_.take_error());
    const std::size_t done = chunks_done_.load();
    if (done != chunk_count_) throw Cancelled(cancelled_message(what, done, chunk_count_));
  }

 private:
  void run_chunks() noexcept {
    auto first = std::ranges::begin(input_);
    for (;;) {
      if (cancelled_.load(std::memory_order_relaxed) || stop_.stop_requested()) return;
      const std::size_t chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= chunk_count_) return;
      const std::size_t lo = chunk * chunksize_;  // < size_: chunk < ⌈size_ / chunksize_⌉
      const std::size_t hi = lo + std::min(chunksize_, size_ - lo);
      if (Mode == MapMode::kFailFast && lo > failures_.lowest()) return;
      run_chunk(first, lo, hi);
      chunks_done_.fetch_add(1);
      progress_.add(hi - lo);
    }
  }

  template <class It>
  void run_chunk(It first, std::size_t lo, std::size_t hi) noexcept {
    using Diff = std::iter_difference_t<It>;
    if constexpr (Mode == MapMode::kOutcomes) {
      for (std::size_t i = lo; i < hi; ++i) out_[i] = call_item<R, Mode>(fn_, first[Diff(i)]);
    } else {
      std::size_t i = lo;
      try {
        for (; i < hi; ++i) {
          if constexpr (std::is_void_v<R>) {
            std::invoke(fn_, first[Diff(i)]);
          } else {
            out_[i] = std::invoke(fn_, first[Diff(i)]);
          }
        }
      } catch (...) {
        failures_.record(i, std::current_exception());
      }
    }
  }

  void runner_finished() noexcept {
    if (runners_left_.fetch_sub(1) == 1) {
      { std::lock_guard lock(done_mu_); }
      done_cv_.notify_all();
    }
  }

  const Fn& fn_;
  Range& input_;
  const std::size_t size_;
  const std::size_t chunksize_;
  const std::size_t chunk_count_;
  std::stop_token stop_;
  ProgressReporter progress_;
  Out* const out_;  // out_[i] is written only by the runner that claimed i's chunk
  std::atomic<std::size_t> next_chunk_{0};
  std::atomic<std::size_t> chunks_done_{0};
  std::atomic<bool> cancelled_{false};
  FailureTracker failures_;
  std::atomic<std::size_t> runners_left_;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
};

// Runs a bulk map over a sized random-access range; returns the per-item elements.
template <class R, MapMode Mode, class Fn, class Range>
auto run_bulk(ThreadPoolCore& core, const Fn& fn, Range& input, const MapOptions& options,
              const char* what) {
  const std::size_t requested = validated_chunksize(options);
  const auto size = static_cast<std::size_t>(std::ranges::size(input));
  using Out = Element<R, Mode>;
  // Fail-fast void tasks have nothing to store (Out is std::monostate then).
  constexpr bool kStoresValues = !(Mode == MapMode::kFailFast && std::is_void_v<R>);
  std::vector<Out> out;
  if constexpr (kStoresValues) {
    out.reserve(size);
    advise_huge_pages(out.data(), size * sizeof(Out));
    out.resize(size);
  }
  if (size == 0) return out;
  // A running task of the pool may still map while it drains (enqueue() takes its sub-tasks too).
  if (core.closed() && current_worker_pool() != &core)
    throw PoolClosed(std::string("crew::ThreadPool: cannot ") + what + " after shutdown()");

  const std::size_t chunksize =
      requested != 0 ? requested : auto_chunksize(size, core.worker_count());
  const std::size_t chunks = ceil_div(size, chunksize);
  const bool nested = current_worker_pool() == &core;
  const std::size_t queued = std::min(core.worker_count(), chunks);
  auto job = std::make_shared<BulkMapJob<R, Mode, Fn, Range>>(fn, input, size, chunksize,
                                                              queued + (nested ? 1 : 0), options,
                                                              kStoresValues ? out.data() : nullptr);
  core.enqueue(job, queued);
  if (nested) job->run();  // a worker waiting on its own pool works instead of blocking a slot
  job->wait(&core);
  job->rethrow_if_incomplete(what);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Stream path.

// How a stream run cuts its input: a fixed chunk size (explicit, or automatic from a known input
// size), or — input of unknown size, automatic — chunks that start at 1 item and double while a
// chunk finishes in under kAdaptiveChunkTarget. Shared by the thread and process engines.
// Thread safety: next() from the caller's thread, observe() from any thread.
class ChunkSizer {
 public:
  // `requested`: MapOptions::chunksize after validation (0 = automatic); `size`: the input's size
  // (0 = unknown).
  ChunkSizer(std::size_t requested, std::size_t size, std::size_t workers)
      : fixed_(requested != 0 ? requested
               : size != 0    ? auto_chunksize(size, workers)
                              : 0) {}

  // Number of chunks for `size` items, or 0 while the size or the chunk size is not fixed.
  std::size_t chunks_for(std::size_t size) const noexcept {
    return size != 0 && fixed_ != 0 ? ceil_div(size, fixed_) : 0;
  }

  std::size_t next() {
    if (fixed_ != 0) return fixed_;
    std::lock_guard lock(mu_);
    if (last_wall_ > std::chrono::nanoseconds::zero() && last_wall_ < kAdaptiveChunkTarget &&
        adaptive_ < kMaxAutoChunksize) {
      adaptive_ *= 2;
      last_wall_ = std::chrono::nanoseconds::zero();  // grow once per observed chunk
    }
    return adaptive_;
  }

  // A chunk that ran took `wall`.
  void observe(std::chrono::nanoseconds wall) {
    if (fixed_ != 0) return;
    std::lock_guard lock(mu_);
    last_wall_ = wall;
  }

 private:
  const std::size_t fixed_;
  std::mutex mu_;
  std::chrono::nanoseconds last_wall_{};  // guarded by mu_
  std::size_t adaptive_ = 1;              // guarded by mu_
};

// The size of a view when it knows it, else 0.
template <class View>
std::size_t size_if_known(View& view) {
  if constexpr (std::ranges::sized_range<View>) {
    return static_cast<std::size_t>(std::ranges::size(view));
  } else {
    return 0;
  }
}

template <class R, MapMode Mode>
struct StreamChunk {
  std::size_t index = 0;  // chunk number, in input order
  std::size_t first = 0;  // input position of its first item
  std::size_t count = 0;  // items handed to it
  // Results of the items that ran. Fail-fast: only those before the failure.
  std::vector<Element<R, Mode>> results;
  std::exception_ptr error;  // fail-fast: the failure at position first + results.size()
  bool skipped = false;      // cancelled before it ran
  std::chrono::nanoseconds wall{};
};

// What an imap range consumes, independent of the function and input types.
template <class R, MapMode Mode>
class StreamSource {
 public:
  virtual ~StreamSource() = default;
  // The next chunk (in input order when ordered), or nullptr when every chunk was consumed.
  // Blocks. Throws: crew::PoolClosed if the pool shut down before the input was exhausted.
  virtual std::shared_ptr<StreamChunk<R, Mode>> next() = 0;
  // Cancels chunks not yet started and blocks until the running ones finish. Idempotent.
  virtual void close() noexcept = 0;
  virtual std::size_t chunks_consumed() const noexcept = 0;
  virtual std::size_t chunks_total_if_known() const noexcept = 0;
};

template <class R, MapMode Mode, class Fn, class View>
class StreamRun final : public StreamSource<R, Mode>,
                        public std::enable_shared_from_this<StreamRun<R, Mode, Fn, View>> {
  static constexpr bool kForward = std::ranges::forward_range<View>;
  using Chunk = StreamChunk<R, Mode>;
  using Iterator = std::ranges::iterator_t<View>;
  using Sentinel = std::ranges::sentinel_t<View>;
  using Value = std::ranges::range_value_t<View>;
  // A forward range is read in place by the worker; a single-pass input range is copied by the
  // caller into the chunk, since only the caller may advance it.
  using Payload = std::conditional_t<kForward, Iterator, std::vector<Value>>;

 public:
  StreamRun(ThreadPoolCore& core, Fn fn, View view, bool ordered, const MapOptions& options)
      : core_(core),
        fn_(std::move(fn)),
        view_(std::move(view)),
        ordered_(ordered),
        window_(options.window.value_or(kDefaultWindowPerWorker * core.worker_count())),
        stop_(options.stop),
        total_(size_if_known(view_)),
        chunk_sizer_(validated_chunksize(options), total_, core.worker_count()),
        progress_(options.on_progress, total_) {}
  ~StreamRun() override = default;

  std::shared_ptr<Chunk> next() override {
    if (!it_) it_.emplace(std::ranges::begin(view_));
    refill();
    if (outstanding_ == 0) {
      if (!input_done_ && stop_.stop_requested()) {
        throw Cancelled(cancelled_message("imap", consumed_, chunks_total_if_known()));
      }
      return nullptr;
    }
    std::shared_ptr<Chunk> chunk;
    auto take = [&]() -> bool {
      if (completed_.empty()) return false;
      auto it = ordered_ ? completed_.find(next_to_yield_) : completed_.begin();
      if (it == completed_.end()) return false;
      chunk = std::move(it->second);
      completed_.erase(it);
      return true;
    };
    const void* const self[] = {identity()};
    wait_helping(
        &core_, mu_, cv_,
        [this] { return ordered_ ? completed_.count(next_to_yield_) != 0 : !completed_.empty(); },
        self);
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, take);
    }
    --outstanding_;
    ++consumed_;
    if (ordered_) ++next_to_yield_;
    return chunk;
  }

  void close() noexcept override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      if (running_ == 0) return;
    }
    const void* const self[] = {identity()};
    wait_helping(
        &core_, mu_, cv_, [this] { return running_ == 0; }, self);
  }

  // What its chunk jobs carry as their group (see Job::group).
  const void* identity() const noexcept { return static_cast<const void*>(this); }

  std::size_t chunks_consumed() const noexcept override { return consumed_; }
  std::size_t chunks_total_if_known() const noexcept override {
    return chunk_sizer_.chunks_for(total_);
  }

 private:
  class ChunkJob final : public Job {
   public:
    ChunkJob(std::shared_ptr<StreamRun> run, std::shared_ptr<Chunk> chunk, Payload payload)
        : run_(std::move(run)), chunk_(std::move(chunk)), payload_(std::move(payload)) {
      group = run_->identity();  // a waiter on the run may run any of its chunks
    }
    // The chunk is handed over to the run's reorder buffer: once complete() publishes it, this job
    // holds no reference to it, so only the consumer's thread frees its results and error.
    void run() noexcept override { run_->execute(std::move(chunk_), payload_); }
    std::size_t cancel_queued() noexcept override {
      chunk_->skipped = true;
      run_->complete(std::move(chunk_), /*was_running=*/false);
      return 0;
    }

   private:
    std::shared_ptr<StreamRun> run_;
    std::shared_ptr<Chunk> chunk_;
    Payload payload_;
  };

  // Caller's thread only: submits chunks until `window_` are outstanding or the input ends.
  void refill() {
    while (outstanding_ < window_ && !input_done_) {
      if (stop_.stop_requested()) return;
      if (Mode == MapMode::kFailFast && failures_.any()) return;
      {
        std::lock_guard lock(mu_);
        if (cancelled_) return;
      }
      if (*it_ == std::ranges::end(view_)) {
        input_done_ = true;
        return;
      }
      const std::size_t want = chunk_sizer_.next();
      auto chunk = std::make_shared<Chunk>();
      chunk->index = next_index_++;
      chunk->first = next_position_;
      Payload payload;
      if constexpr (kForward) {
        payload = *it_;
        // A chunksize past PTRDIFF_MAX would turn negative: no range holds that many anyway.
        const auto step = static_cast<std::ptrdiff_t>(
            std::min<std::size_t>(want, std::numeric_limits<std::ptrdiff_t>::max()));
        const auto missing = std::ranges::advance(*it_, step, std::ranges::end(view_));
        chunk->count = static_cast<std::size_t>(step - missing);
      } else {
        payload.reserve(std::min(want, kMaxReserveAhead));
        for (auto& it = *it_; payload.size() < want && it != std::ranges::end(view_); ++it) {
          payload.push_back(*it);
        }
        chunk->count = payload.size();
      }
      next_position_ += chunk->count;
      core_.enqueue(
          std::make_shared<ChunkJob>(this->shared_from_this(), chunk, std::move(payload)));
      ++outstanding_;
    }
  }

  // Worker side.
  void execute(std::shared_ptr<Chunk> chunk, Payload& payload) noexcept {
    {
      std::lock_guard lock(mu_);
      const bool after_failure = Mode == MapMode::kFailFast && chunk->first > failures_.lowest();
      if (cancelled_ || stop_.stop_requested() || after_failure) {
        chunk->skipped = true;
      } else {
        ++running_;
      }
    }
    if (chunk->skipped) {
      complete(std::move(chunk), /*was_running=*/false);
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    chunk->results.reserve(chunk->count);
    auto items = [&]() -> decltype(auto) {
      if constexpr (kForward) {
        return std::views::counted(payload, static_cast<std::ptrdiff_t>(chunk->count));
      } else {
        return (payload);
      }
    };
    if constexpr (Mode == MapMode::kOutcomes) {
      for (auto&& item : items()) chunk->results.push_back(call_item<R, Mode>(fn_, item));
    } else {
      try {
        for (auto&& item : items()) chunk->results.push_back(call_item<R, Mode>(fn_, item));
      } catch (...) {
        chunk->error = std::current_exception();
        // Only the position: the error travels in the chunk, so the consumer holds its last
        // reference (a copy here would be freed by whichever thread drops the run last).
        failures_.record(chunk->first + chunk->results.size(), nullptr);
      }
    }
    chunk->wall = std::chrono::steady_clock::now() - start;
    progress_.add(chunk->results.size());
    complete(std::move(chunk), /*was_running=*/true);
  }

  void complete(std::shared_ptr<Chunk> chunk, bool was_running) noexcept {
    if (was_running) chunk_sizer_.observe(chunk->wall);
    {
      std::lock_guard lock(mu_);
      if (was_running) --running_;
      const std::size_t index = chunk->index;
      completed_.emplace(index, std::move(chunk));
    }
    cv_.notify_all();
  }

  ThreadPoolCore& core_;
  const Fn fn_;  // shared by all workers: invoked as const
  View view_;
  const bool ordered_;
  const std::size_t window_;
  std::stop_token stop_;
  const std::size_t total_;
  ChunkSizer chunk_sizer_;
  ProgressReporter progress_;
  FailureTracker failures_;

  // The caller's thread only.
  std::optional<Iterator> it_;  // C++20 input iterators need not be default-constructible
  bool input_done_ = false;
  std::size_t next_index_ = 0;
  std::size_t next_position_ = 0;
  std::size_t next_to_yield_ = 0;
  std::size_t outstanding_ = 0;  // submitted and not yet consumed: bounds memory by window_
  std::size_t consumed_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::size_t, std::shared_ptr<Chunk>> completed_;  // guarded by mu_: reorder buffer
  std::size_t running_ = 0;                                  // guarded by mu_
  bool cancelled_ = false;                                   // guarded by mu_
};

template <class R, MapMode Mode, class Fn, class Range>
std::shared_ptr<StreamSource<R, Mode>> make_stream(ThreadPoolCore& core, Fn fn, Range&& input,
                                                   bool ordered, const MapOptions& options) {
  using View = std::views::all_t<Range>;
  if (core.closed() && current_worker_pool() != &core) {
    throw PoolClosed("crew::ThreadPool: cannot map after shutdown()");
  }
  return std::make_shared<StreamRun<R, Mode, Fn, View>>(
      core, std::move(fn), std::views::all(std::forward<Range>(input)), ordered, options);
}

// Closes a stream when the scope ends, whatever the path out.
template <class Source>
class StreamCloser {
 public:
  explicit StreamCloser(std::shared_ptr<Source> source) : source_(std::move(source)) {}
  ~StreamCloser() {
    if (source_) source_->close();
  }
  StreamCloser(const StreamCloser&) = delete;
  StreamCloser& operator=(const StreamCloser&) = delete;

 private:
  std::shared_ptr<Source> source_;
};

}  // namespace crew::detail
