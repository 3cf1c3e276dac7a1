// crew::ProcessPool: run functions in a crew of forked worker processes — for code that is not
// thread-safe, for isolation (a crash fails one task, not the program), and for hard timeouts.
//
//   crew::ProcessPool pool({.workers = 4});
//   crew::Future<long> f = pool.submit(is_prime, 97L);
//   std::vector<long> v = pool.map(is_prime, numbers);
//   for (long r : pool.imap(is_prime, numbers)) {}
//
// Tasks are functions or captureless lambdas: workers are forked, so the same code sits at the
// same address there. Arguments, items and results cross as bytes (see serialization.hpp):
// pointers, references and views are refused at compile time. A task's exception comes back as
// crew::TaskFailed (type name and what()); a worker that dies fails only the task it held, with
// crew::WorkerCrashed, and is replaced.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "crew/detail/map_run.hpp"
#include "crew/detail/process_core.hpp"
#include "crew/detail/value_codec.hpp"
#include "crew/errors.hpp"
#include "crew/future.hpp"
#include "crew/options.hpp"
#include "crew/outcome.hpp"
#include "crew/process_stats.hpp"
#include "crew/serialization.hpp"
#include "crew/thread_pool.hpp"

namespace crew {
namespace detail {

// A function pointer, or a captureless lambda (or any empty, default-constructible function
// object): something a forked worker can call without bytes from us.
template <class F>
concept ProcessTaskFunction = (std::is_pointer_v<F> &&
                               std::is_function_v<std::remove_pointer_t<F>>) ||
                              (std::is_class_v<F> && std::is_empty_v<F> &&
                               std::is_default_constructible_v<F>);

template <class F>
constexpr void check_process_function() {
  static_assert(ProcessTaskFunction<F>,
                "crew::ProcessPool: a task must be a function or a captureless lambda (its "
                "captures could not cross to the worker process): pass state as arguments");
}

template <class F>
std::uintptr_t function_bits(const F& f) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<std::uintptr_t>(f);
  } else {
    return 0;
  }
}

template <class F>
F function_from_bits(std::uintptr_t bits) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<F>(bits);
  } else {
    return F{};
  }
}

// --- submit -----------------------------------------------------------------------------------

inline std::string argument_name(std::size_t index) {
  return "argument " + std::to_string(index + 1) + " of the task";
}
inline std::string task_result_name() { return "the result of the task"; }

template <class... Args, std::size_t... I>
std::tuple<Args...> decode_arguments(ByteReader& in, std::index_sequence<I...>) {
  // Braced: decoded left to right.
  return std::tuple<Args...>{decode_value<Args>(
      in, [] { return argument_name(I); }, " in the worker")...};
}

template <class... Args, std::size_t... I>
void encode_arguments(ByteWriter& out, std::index_sequence<I...>, const Args&... args) {
  (encode_value(
       out, args, [] { return argument_name(I); }, ""),
   ...);
}

// Worker side of submit: decode the arguments, call, encode the result or the exception.
template <class F, class R, class... Args>
void task_entry(std::uintptr_t bits, ByteReader& in, ByteWriter& out) {
  const std::size_t at = out.size();
  std::optional<std::tuple<Args...>> args;
  try {
    args.emplace(decode_arguments<Args...>(in, std::index_sequence_for<Args...>{}));
  } catch (...) {
    write_serialization_failure(out, at);
    return;
  }
  try {
    F fn = function_from_bits<F>(bits);
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(*args));
      out.put(ReplyStatus::kOk);
    } else {
      R result = std::apply(fn, std::move(*args));
      out.put(ReplyStatus::kOk);
      try {
        encode_value(out, result, task_result_name, " in the worker");
      } catch (...) {
        write_serialization_failure(out, at);
      }
    }
  } catch (...) {
    out.truncate(at);
    write_task_failure(out, std::current_exception());
  }
}

inline bool is_cancellation(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const Cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Host side of submit: the Future's state and the queued job in one object.
template <class R>
class ProcessTask final : public State<R>, public ProcessJob {
 public:
  explicit ProcessTask(std::shared_ptr<FailureLog> failures)
      : State<R>(nullptr, std::move(failures), false) {}

  bool start() noexcept override { return this->try_start(); }

  void on_reply(ByteReader& reply) noexcept override {
    this->run_and_settle([&]() -> R {
      const auto status = reply.get<ReplyStatus>();
      if (status == ReplyStatus::kSerializationFailed) {
        std::rethrow_exception(read_serialization_failure(reply));
      }
      if (status != ReplyStatus::kOk) std::rethrow_exception(read_task_failure(reply));
      if constexpr (!std::is_void_v<R>) return decode_value<R>(reply, task_result_name, "");
    });
  }

  void on_failure(std::exception_ptr error, bool started) noexcept override {
    if (!started) {
      // Never ran: a cancellation settles it as cancelled (Future::cancelled() is true); other
      // errors (a broken pool) as failed, unless its Future cancelled it meanwhile.
      if (is_cancellation(error)) {
        (void)this->cancel();
        return;
      }
      if (!this->try_start()) return;
    }
    // Moved, not copied: once settled, the waiting thread must hold the error's last reference
    // (see StateBase::rethrow_if_unsuccessful), so none may stay in this frame.
    this->run_and_settle([&]() -> R { std::rethrow_exception(std::move(error)); });
  }
};

// --- map chunks -------------------------------------------------------------------------------

inline std::string worker_item_name() { return "an item of the map"; }
inline std::string worker_result_name() { return "the result for an item of the map"; }

// Worker side of a map chunk. Reply, fail-fast: status, count done, the results, and the failure
// (type, what; or a message when a value could not cross) when status is not kOk. Outcomes: per
// item a status and a value (length-prefixed unless raw, so the host can skip one it cannot
// decode) or a failure.
template <class F, class Item, class R, MapMode Mode, bool kUnpack>
void chunk_entry(std::uintptr_t bits, ByteReader& in, ByteWriter& out) {
  F fn = function_from_bits<F>(bits);
  const auto count = in.get<std::uint64_t>();
  auto call = [&fn](Item&& item) -> decltype(auto) {
    if constexpr (kUnpack) {
      return std::apply(fn, std::move(item));
    } else {
      return fn(std::move(item));
    }
  };
  EntryPhase phase = EntryPhase::kDecoding;
  if constexpr (Mode == MapMode::kOutcomes) {
    const std::size_t count_at = out.size();
    out.put<std::uint64_t>(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::size_t at = out.size();
      try {
        phase = EntryPhase::kDecoding;
        Item item = decode_value<Item>(in, worker_item_name, " in the worker");
        phase = EntryPhase::kCalling;
        if constexpr (std::is_void_v<R>) {
          call(std::move(item));
          out.put(ReplyStatus::kOk);
        } else {
          R result = call(std::move(item));
          phase = EntryPhase::kEncoding;
          out.put(ReplyStatus::kOk);
          if constexpr (kRaw<R>) {
            out.put(result);
          } else {
            const std::size_t size_at = out.size();
            out.put<std::uint64_t>(0);
            encode_value(out, result, worker_result_name, " in the worker");
            const std::uint64_t size = out.size() - size_at - sizeof(std::uint64_t);
            std::memcpy(out.bytes().data() + size_at, &size, sizeof size);
          }
        }
      } catch (...) {
        if (phase == EntryPhase::kCalling) {
          out.truncate(at);
          write_task_failure(out, std::current_exception());
        } else {
          write_serialization_failure(out, at);
        }
        if (phase == EntryPhase::kDecoding && in.remaining() == 0) {
          // count comes from the wire: a request that ends before its items is answered once,
          // not once per missing item (the host then fails the whole chunk).
          const std::uint64_t written = i + 1;
          std::memcpy(out.bytes().data() + count_at, &written, sizeof written);
          break;
        }
      }
    }
  } else {
    const std::size_t header = out.size();
    out.put(ReplyStatus::kOk);
    out.put<std::uint64_t>(0);
    const std::size_t block = out.size();
    std::uint64_t done = 0;
    try {
      if constexpr (kRaw<Item>) {
        // Items are read in place: one bounds check for the chunk (a division: count comes from
        // the wire and count × size could wrap), then plain loads.
        if (count > in.remaining() / sizeof(Item)) {
          throw SerializationError("crew: chunk shorter than its item count");
        }
        // Raw results go straight into a block sized for the whole chunk (trimmed to what ran):
        // count is checked against the bytes that carry the items, so this block is bounded.
        if constexpr (kRaw<R>) (void)out.extend(count * sizeof(R));
      }
      for (; done < count; ++done) {
        phase = EntryPhase::kDecoding;
        Item item = [&] {
          if constexpr (kRaw<Item>) {
            Item raw;
            std::memcpy(&raw, in.position() + done * sizeof(Item), sizeof(Item));
            return raw;
          } else {
            return decode_value<Item>(in, worker_item_name, " in the worker");
          }
        }();
        phase = EntryPhase::kCalling;
        if constexpr (std::is_void_v<R>) {
          call(std::move(item));
        } else if constexpr (kRaw<R> && kRaw<Item>) {
          const R result = call(std::move(item));
          std::memcpy(out.bytes().data() + block + done * sizeof(R), &result, sizeof(R));
        } else if constexpr (kRaw<R>) {
          out.put(call(std::move(item)));
        } else {
          R result = call(std::move(item));
          phase = EntryPhase::kEncoding;
          encode_value(out, result, worker_result_name, " in the worker");
        }
      }
    } catch (...) {
      if constexpr (kRaw<R>) out.truncate(block + done * sizeof(R));
      const std::size_t before = out.size();
      ReplyStatus failed = ReplyStatus::kFailed;
      if (phase == EntryPhase::kCalling) {
        write_task_failure(out, std::current_exception());
      } else {
        failed = ReplyStatus::kSerializationFailed;
        write_serialization_failure(out, before);
      }
      std::memcpy(out.bytes().data() + header, &failed, sizeof failed);
      // The failure starts with its own status byte: drop it, the header has one.
      out.bytes().erase(before, sizeof(ReplyStatus));
    }
    std::memcpy(out.bytes().data() + header + sizeof(ReplyStatus), &done, sizeof done);
  }
}

// One map run on a ProcessPool: the caller's thread pulls input, encodes chunks and queues at
// most `window` that are not yet consumed; the dispatcher thread decodes replies into chunks.
template <class R, MapMode Mode, class Fn, class Item, bool kUnpack, class View>
class ProcessStreamRun final
    : public StreamSource<R, Mode>,
      public std::enable_shared_from_this<ProcessStreamRun<R, Mode, Fn, Item, kUnpack, View>> {
  using Chunk = StreamChunk<R, Mode>;

  class ChunkJob final : public ProcessJob {
   public:
    ChunkJob(std::shared_ptr<ProcessStreamRun> run, std::shared_ptr<Chunk> chunk)
        : run_(std::move(run)), chunk_(std::move(chunk)) {}

    bool start() noexcept override {
      if (run_->may_start(chunk_->first)) return true;
      chunk_->skipped = true;
      run_->complete(std::move(chunk_), false);
      return false;
    }
    void on_reply(ByteReader& reply) noexcept override {
      try {
        decode_reply(reply);
      } catch (...) {
        fail(std::current_exception());
      }
      chunk_->wall = worker_wall;
      run_->complete(std::move(chunk_), true);
    }
    void on_failure(std::exception_ptr error, bool started) noexcept override {
      if (run_->stopped()) {
        chunk_->skipped = true;
      } else {
        fail(std::move(error));
      }
      run_->complete(std::move(chunk_), started);
    }

   private:
    std::string result_name(std::size_t i) const {
      return "the result for item " + std::to_string(chunk_->first + i) + " of the map";
    }

    void decode_reply(ByteReader& reply) {
      auto& results = chunk_->results;
      if constexpr (Mode == MapMode::kOutcomes) {
        const auto count = reply.get<std::uint64_t>();
        // Counts from the wire are checked against what this chunk sent before anything is sized
        // by them.
        if (count != chunk_->count) {
          throw SerializationError("crew: a worker replied with " + std::to_string(count) +
                                   " outcomes for a chunk of " + std::to_string(chunk_->count) +
                                   " items");
        }
        results.reserve(count);
        for (std::uint64_t i = 0; i < count; ++i) {
          const auto status = reply.get<ReplyStatus>();
          if (status == ReplyStatus::kOk) {
            if constexpr (std::is_void_v<R>) {
              results.push_back(Outcome<void>::success());
            } else if constexpr (kRaw<R>) {
              results.push_back(Outcome<R>::success(reply.get<R>()));
            } else {
              // Its own bytes: a value that fails to decode fails its item only.
              const auto size = reply.get<std::uint64_t>();
              ByteReader value(reply.take(size), size);
              try {
                results.push_back(Outcome<R>::success(decode_value<R>(
                    value, [&] { return result_name(i); }, "")));
              } catch (const SerializationError&) {
                results.push_back(Outcome<R>::failure(std::current_exception()));
              }
            }
          } else if (status == ReplyStatus::kSerializationFailed) {
            results.push_back(Outcome<R>::failure(read_serialization_failure(reply)));
          } else {
            results.push_back(Outcome<R>::failure(read_task_failure(reply)));
          }
        }
      } else {
        const auto status = reply.get<ReplyStatus>();
        const auto done = reply.get<std::uint64_t>();
        if (done > chunk_->count) {
          throw SerializationError("crew: a worker replied with " + std::to_string(done) +
                                   " results for a chunk of " + std::to_string(chunk_->count) +
                                   " items");
        }
        if constexpr (std::is_void_v<R>) {
          results.resize(done);
        } else {
          results.reserve(done);
          if constexpr (kRaw<R>) {
            const char* block = reply.take(done * sizeof(R));
            results.resize(done);
            for (std::uint64_t i = 0; i < done; ++i) {
              R value;
              std::memcpy(&value, block + i * sizeof(R), sizeof(R));
              results[i] = value;
            }
          } else {
            for (std::uint64_t i = 0; i < done; ++i) {
              try {
                results.push_back(decode_value<R>(
                    reply, [&] { return result_name(i); }, ""));
              } catch (const SerializationError&) {
                // The lowest failure of this chunk: the items after it are not needed.
                chunk_->error = std::current_exception();
                run_->record_failure(chunk_->first + i);
                return;
              }
            }
          }
        }
        if (status == ReplyStatus::kSerializationFailed) {
          chunk_->error = read_serialization_failure(reply);
          run_->record_failure(chunk_->first + done);
        } else if (status != ReplyStatus::kOk) {
          chunk_->error = read_task_failure(reply);
          run_->record_failure(chunk_->first + done);
        }
      }
    }

    void fail(std::exception_ptr error) {
      if constexpr (Mode == MapMode::kOutcomes) {
        chunk_->results.clear();
        for (std::size_t i = 0; i < chunk_->count; ++i) {
          chunk_->results.push_back(Outcome<R>::failure(error));
        }
      } else {
        // Which item the worker was on is unknown: the chunk's first position stands for it.
        chunk_->results.clear();
        chunk_->error = std::move(error);
        run_->record_failure(chunk_->first);
      }
    }

    std::shared_ptr<ProcessStreamRun> run_;
    std::shared_ptr<Chunk> chunk_;
  };

 public:
  ProcessStreamRun(ProcessCore& core, View view, bool ordered, const MapOptions& options)
      : core_(core),
        group_(core.new_group()),
        view_(std::move(view)),
        ordered_(ordered),
        window_(options.window.value_or(kDefaultWindowPerWorker * core.worker_count())),
        stop_(options.stop),
        total_(size_if_known(view_)),
        chunk_sizer_(requested_chunksize(core, options), total_, core.worker_count()),
        progress_(options.on_progress, total_) {}

  // Registers the stop callback. Separate from the constructor: the callback holds a weak_ptr to
  // the run (it may run at once, on the thread that requests the stop, while the last job holding
  // the run is dropped inside it), which needs the shared_ptr to exist.
  void watch_stop() {
    if (stop_.stop_possible()) {
      on_stop_.emplace(stop_, [weak = this->weak_from_this()] {
        const auto self = weak.lock();
        if (!self) return;  // being destroyed: its destructor waits for this callback
        {
          std::lock_guard lock(self->mu_);
          self->cancelled_ = true;
        }
        // Running chunks are abandoned: their workers are killed and replaced, so a stop takes
        // effect now, not after the slowest chunk.
        self->core_.cancel_group(self->group_, true);
        self->cv_.notify_all();
      });
    }
  }

  ~ProcessStreamRun() override = default;

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
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        if (completed_.empty()) return false;
        auto it = ordered_ ? completed_.find(next_to_yield_) : completed_.begin();
        if (it == completed_.end()) return false;
        chunk = std::move(it->second);
        completed_.erase(it);
        return true;
      });
    }
    --outstanding_;
    ++consumed_;
    if (ordered_) ++next_to_yield_;
    return chunk;
  }

  // Drops the queued chunks. Chunks already in a worker finish there and are discarded: their
  // items were copied into the request, so the caller's input may go away at once.
  void close() noexcept override {
    {
      std::lock_guard lock(mu_);
      if (cancelled_) return;
      cancelled_ = true;
    }
    core_.cancel_group(group_, false);
  }

  // With a task timeout, automatic chunks hold one item: the timeout then means one item.
  static std::size_t requested_chunksize(ProcessCore& core, const MapOptions& options) {
    const std::size_t requested = validated_chunksize(options);
    return requested == 0 && core.task_timeout_or_zero().count() > 0 ? 1 : requested;
  }

  std::size_t chunks_consumed() const noexcept override { return consumed_; }
  std::size_t chunks_total_if_known() const noexcept override {
    return chunk_sizer_.chunks_for(total_);
  }

  // Dispatcher thread.
  bool may_start(std::size_t first) {
    std::lock_guard lock(mu_);
    return !cancelled_ && !stop_.stop_requested() &&
           !(Mode == MapMode::kFailFast && first > failures_.lowest());
  }
  bool stopped() {
    std::lock_guard lock(mu_);
    return cancelled_ || stop_.stop_requested();
  }
  void record_failure(std::size_t position) { failures_.record(position, nullptr); }

  void complete(std::shared_ptr<Chunk> chunk, bool ran) noexcept {
    if (ran && !chunk->skipped) {
      progress_.add(chunk->results.size());
      chunk_sizer_.observe(chunk->wall);
    }
    {
      std::lock_guard lock(mu_);
      const std::size_t index = chunk->index;
      completed_.emplace(index, std::move(chunk));
    }
    cv_.notify_all();
  }

 private:
  void refill() {
    while (outstanding_ < window_ && !input_done_) {
      if (stop_.stop_requested()) return;
      if (Mode == MapMode::kFailFast && failures_.any()) return;
      {
        std::lock_guard lock(mu_);
        if (cancelled_) return;
      }
      auto& it = *it_;
      if (it == std::ranges::end(view_)) {
        input_done_ = true;
        return;
      }
      const std::size_t want = chunk_sizer_.next();
      auto chunk = std::make_shared<Chunk>();
      chunk->index = next_index_++;
      chunk->first = next_position_;
      auto job = std::make_shared<ChunkJob>(this->shared_from_this(), chunk);
      job->entry = &chunk_entry<Fn, Item, R, Mode, kUnpack>;
      job->function = function_bits_;
      job->group = group_;
      ByteWriter& request = job->request;
      const std::size_t count_at = request.size();
      request.put<std::uint64_t>(0);
      std::size_t count = 0;
      if constexpr (kRaw<Item>) {
        // One block for the chunk, trimmed to the items the input had. Sized by the items left
        // when the input's size is known, and grown as items come otherwise: `want` is the
        // caller's chunksize, which may be anything up to SIZE_MAX (want × size would wrap).
        const std::size_t block = request.size();
        std::size_t room =
            total_ != 0 ? std::min(want, total_ - next_position_) : std::min<std::size_t>(want, 64);
        (void)request.extend(room * sizeof(Item));
        for (; count < want && it != std::ranges::end(view_); ++it, ++count) {
          if (count == room) {
            room = count + std::max<std::size_t>(1, std::min(want - count, count));
            request.truncate(block + room * sizeof(Item));
          }
          const Item item = *it;
          std::memcpy(request.bytes().data() + block + count * sizeof(Item), &item, sizeof(Item));
        }
        request.truncate(block + count * sizeof(Item));
      } else {
        for (; count < want && it != std::ranges::end(view_); ++it, ++count) {
          const Item item = *it;
          encode_value(
              request, item,
              [&] { return "item " + std::to_string(next_position_ + count) + " of the map"; }, "");
        }
      }
      const std::uint64_t count64 = count;
      std::memcpy(request.bytes().data() + count_at, &count64, sizeof count64);
      chunk->count = count;
      job->items = count;
      next_position_ += count;
      ++outstanding_;
      if constexpr (Mode == MapMode::kOutcomes) {
        // A broken pool still gives every item an outcome: its error.
        try {
          core_.enqueue(job);
        } catch (const BrokenPool&) {
          job->on_failure(std::current_exception(), false);
        }
      } else {
        core_.enqueue(std::move(job));
      }
    }
  }

 public:
  std::uintptr_t function_bits_ = 0;

 private:
  ProcessCore& core_;
  const std::uint64_t group_;
  View view_;
  const bool ordered_;
  const std::size_t window_;
  std::stop_token stop_;
  const std::size_t total_;
  ChunkSizer chunk_sizer_;
  ProgressReporter progress_;
  FailureTracker failures_;

  // The caller's thread only.
  std::optional<std::ranges::iterator_t<View>> it_;
  bool input_done_ = false;
  std::size_t next_index_ = 0;
  std::size_t next_position_ = 0;
  std::size_t next_to_yield_ = 0;
  std::size_t outstanding_ = 0;
  std::size_t consumed_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::size_t, std::shared_ptr<Chunk>> completed_;  // guarded by mu_: reorder buffer
  bool cancelled_ = false;                                   // guarded by mu_
  // Last member: destroyed first, so the callback never runs on a half-destroyed run.
  std::optional<std::stop_callback<std::function<void()>>> on_stop_;
};

template <class Item, class F, bool kUnpack>
struct ProcessMapResultOf {
  using type = std::remove_cvref_t<std::invoke_result_t<F&, Item>>;
};
template <class Item, class F>
struct ProcessMapResultOf<Item, F, true> {
  using type = std::remove_cvref_t<decltype(std::apply(std::declval<F&>(), std::declval<Item>()))>;
};

}  // namespace detail

// A fixed crew of forked worker processes, fed by one dispatcher thread.
//
// Thread safety: every method may be called from any thread, concurrently. Tasks run in other
// processes: they cannot submit to this pool (the pool object is not theirs).
class ProcessPool {
 public:
  static constexpr std::size_t kMaxWorkers = 1024;

  // Forks the zygote (a single-threaded fork server), which starts the workers. Returns without
  // waiting for their initializers. Blocks: about a fork's time.
  // Throws: std::invalid_argument naming "workers" (0 or > kMaxWorkers), "max_tasks_per_child"
  // (0), "task_timeout" (≤ 0) or "crash_loop_deaths" (0); std::system_error when the system
  // refuses a process, socket or thread.
  explicit ProcessPool(ProcessPoolOptions options = {});
  // shutdown({.wait = true}); reports unobserved failures through the log hook.
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  std::size_t worker_count() const noexcept { return core_->worker_count(); }

  // Queues f(args...) for a worker process and returns its Future. f: a function or a captureless
  // lambda; args are encoded now (so they may go away after submit returns).
  // Blocks: never. Throws: crew::SerializationError when an argument cannot be encoded (naming
  // it); crew::PoolClosed after shutdown(); crew::BrokenPool once broken.
  // The Future's get() throws crew::TaskFailed (the task threw), crew::SerializationError (an
  // argument or the result could not cross), crew::WorkerCrashed, crew::TaskTimeout,
  // crew::Cancelled or crew::BrokenPool.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    using Fn = std::decay_t<F>;
    detail::check_process_function<Fn>();
    (detail::check_crossable<std::decay_t<Args>>(), ...);
    static_assert(std::is_invocable_v<Fn&, std::decay_t<Args>...>,
                  "crew::ProcessPool::submit: the function cannot be called with these arguments");
    using R = std::remove_cvref_t<std::invoke_result_t<Fn&, std::decay_t<Args>...>>;
    if constexpr (!std::is_void_v<R>) detail::check_crossable<R>();
    auto task = std::make_shared<detail::ProcessTask<R>>(core_->failures());
    task->entry = &detail::task_entry<Fn, R, std::decay_t<Args>...>;
    task->function = detail::function_bits(static_cast<const Fn&>(f));
    try {
      detail::encode_arguments<std::decay_t<Args>...>(task->request,
                                                      std::index_sequence_for<Args...>{}, args...);
    } catch (const SerializationError& error) {
      throw SerializationError(std::string("crew::ProcessPool::submit: ") + error.what());
    }
    core_->enqueue(task);
    return Future<R>(std::move(task));
  }

  // Applies f to every item in worker processes; returns the results in input order. Input is
  // pulled lazily with a bounded window of chunks in flight (options.window).
  // Blocks: until every item ran, or a failure's in-flight chunks settled.
  // Throws: the failure of the lowest failing position (crew::TaskFailed, crew::WorkerCrashed,
  // crew::TaskTimeout); crew::Cancelled when options.stop fired (running chunks are killed);
  // std::invalid_argument for chunksize or window 0; crew::PoolClosed; crew::BrokenPool.
  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& input, const MapOptions& options = {}) {
    return collect<false, detail::MapMode::kFailFast>(std::forward<F>(f),
                                                      std::forward<Range>(input), options, "map");
  }

  // map over a range of tuples, unpacking each: f(std::get<0>(t), std::get<1>(t), …).
  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& input, const MapOptions& options = {}) {
    return collect<true, detail::MapMode::kFailFast>(std::forward<F>(f), std::forward<Range>(input),
                                                     options, "starmap");
  }

  // One Outcome per item, in input order; a crashed worker's items hold crew::WorkerCrashed.
  // Throws: only crew::Cancelled, std::invalid_argument, crew::PoolClosed, crew::BrokenPool.
  template <class F, std::ranges::input_range Range>
  auto map_outcomes(F&& f, Range&& input, const MapOptions& options = {}) {
    return collect<false, detail::MapMode::kOutcomes>(
        std::forward<F>(f), std::forward<Range>(input), options, "map_outcomes");
  }

  // Lazy, ordered map (see ThreadPool::imap). Leaving the loop early drops the queued chunks.
  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& input, const MapOptions& options = {}) {
    using R = Result<F, Range, false>;
    static_assert(!std::is_void_v<R>, "crew: imap needs a function that returns a value");
    return ImapRange<R, detail::MapMode::kFailFast>(stream<false, detail::MapMode::kFailFast>(
        std::forward<Range>(input), true, options, static_cast<const std::decay_t<F>&>(f)));
  }

  // Lazy map in completion order; every other item's result is yielded, then the lowest-position
  // failure is thrown at the end of the loop.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& input, const MapOptions& options = {}) {
    using R = Result<F, Range, false>;
    static_assert(!std::is_void_v<R>, "crew: imap_unordered needs a function that returns a value");
    return ImapRange<R, detail::MapMode::kOutcomes>(stream<false, detail::MapMode::kOutcomes>(
        std::forward<Range>(input), false, options, static_cast<const std::decay_t<F>&>(f)));
  }

  // Stops taking work. With wait: blocks until queued tasks ran, every worker and the zygote
  // exited and were reaped. With cancel_pending: queued tasks fail with crew::Cancelled.
  // Idempotent. Throws: nothing.
  ShutdownReport shutdown(const ShutdownOptions& options = {});

  // Kills every worker now (SIGKILL) and reaps it: queued and running tasks fail with
  // crew::Cancelled. Blocks: until every child is reaped. Idempotent. Throws: nothing.
  void terminate();

  // What the pool measured so far: per worker and per chunk. Thread safety: any thread.
  ProcessPoolStats stats() const { return core_->stats(); }
  // Pids of the workers alive now (for tests and diagnostics).
  std::vector<pid_t> worker_pids() const { return core_->worker_pids(); }
  pid_t zygote_pid() const noexcept { return core_->zygote_pid(); }
  // Why the pool is broken, or "" while it works.
  std::string broken_reason() const { return core_->broken_reason(); }

 private:
  template <class F, class Range, bool kUnpack>
  using Result = typename detail::ProcessMapResultOf<
      std::remove_cvref_t<std::ranges::range_reference_t<Range>>, std::decay_t<F>, kUnpack>::type;

  template <bool kUnpack, detail::MapMode Mode, class Range, class Fn>
  auto stream(Range&& input, bool ordered, const MapOptions& options, const Fn& f) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<Range>>;
    using R = typename detail::ProcessMapResultOf<Item, Fn, kUnpack>::type;
    detail::check_process_function<Fn>();
    detail::check_crossable<Item>();
    if constexpr (!std::is_void_v<R>) detail::check_crossable<R>();
    if (core_->closed()) throw PoolClosed("crew::ProcessPool: cannot map after shutdown()");
    using View = std::views::all_t<Range>;
    using Run = detail::ProcessStreamRun<R, Mode, Fn, Item, kUnpack, View>;
    auto run = std::make_shared<Run>(*core_, std::views::all(std::forward<Range>(input)), ordered,
                                     options);
    run->function_bits_ = detail::function_bits(f);
    run->watch_stop();
    return std::shared_ptr<detail::StreamSource<R, Mode>>(std::move(run));
  }

  template <bool kUnpack, detail::MapMode Mode, class F, class Range>
  auto collect(F&& f, Range&& input, const MapOptions& options, const char* what) {
    using R = Result<F, Range, kUnpack>;
    std::size_t expected = 0;
    if constexpr (std::ranges::sized_range<Range>) {
      expected = static_cast<std::size_t>(std::ranges::size(input));
    }
    auto source = stream<kUnpack, Mode>(std::forward<Range>(input), true, options,
                                        static_cast<const std::decay_t<F>&>(f));
    detail::StreamCloser closer(source);
    std::vector<detail::Element<R, Mode>> out;
    out.reserve(expected);
    detail::advise_huge_pages(out.data(), expected * sizeof(detail::Element<R, Mode>));
    while (auto chunk = source->next()) {
      if (chunk->skipped) {
        throw Cancelled(detail::cancelled_message(what, source->chunks_consumed() - 1,
                                                  source->chunks_total_if_known()));
      }
      out.insert(out.end(), std::make_move_iterator(chunk->results.begin()),
                 std::make_move_iterator(chunk->results.end()));
      if constexpr (Mode == detail::MapMode::kFailFast) {
        if (chunk->error) std::rethrow_exception(std::exchange(chunk->error, nullptr));
      }
    }
    if constexpr (Mode == detail::MapMode::kFailFast && std::is_void_v<R>) {
      return;
    } else {
      return out;
    }
  }

  std::unique_ptr<detail::ProcessCore> core_;
};

}  // namespace crew
