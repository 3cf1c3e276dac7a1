// The non-template heart of ProcessPool: the zygote, the worker processes and the dispatcher
// thread that feeds them. Templates in process_pool.hpp turn calls into ProcessJobs; everything
// that touches a process or a descriptor lives in src/process/.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "crew/future.hpp"
#include "crew/options.hpp"
#include "crew/process_stats.hpp"
#include "crew/serialization.hpp"

namespace crew::detail {

// Runs inside a worker process: decodes `request`, calls the task function whose bits are
// `function` (a function pointer, or unused for a captureless lambda), and writes the reply.
// Must catch the task's exceptions itself and encode them (see write_task_failure).
using WorkerEntry = void (*)(std::uintptr_t function, ByteReader& request, ByteWriter& reply);

// First byte of every reply an entry writes. kFailed: the task threw (type name and what()
// follow); kSerializationFailed: a value could not cross (the message follows).
enum class ReplyStatus : std::uint8_t { kOk = 0, kFailed = 1, kSerializationFailed = 2 };

// One unit of work for the worker processes: a task, or one chunk of a map.
// The dispatcher thread calls exactly one of on_reply / on_failure / on_skipped, once.
class ProcessJob {
 public:
  virtual ~ProcessJob() = default;

  WorkerEntry entry = nullptr;
  std::uintptr_t function = 0;
  ByteWriter request;                      // the encoded arguments or items
  std::size_t items = 1;                   // the deadline is task_timeout × items
  std::uint64_t group = 0;                 // the map run this chunk belongs to (0: a lone task)
  std::chrono::nanoseconds worker_wall{};  // set before on_reply: the worker's time on it
  // start() returned true. Set by the dispatcher before it sends the job; a job that goes back to
  // the queue (its worker died before it could start) keeps it. Read by other threads only after
  // taking the job from the queue under the pool's lock.
  bool started = false;

  // Dispatcher thread, just before the job is sent: false drops it (on_skipped is not called;
  // the job has settled itself, e.g. a cancelled task).
  virtual bool start() noexcept = 0;
  // The worker replied; `reply` holds what the entry wrote.
  virtual void on_reply(ByteReader& reply) noexcept = 0;
  // The job cannot complete: its worker died or timed out, the pool was terminated or broke, or
  // the job was cancelled while queued or running. `started` says whether start() had returned
  // true.
  virtual void on_failure(std::exception_ptr error, bool started) noexcept = 0;
};

class ProcessCore {
 public:
  // Forks the zygote, which forks the workers; starts the dispatcher thread. Returns without
  // waiting for the workers' initializers.
  // Throws: std::system_error when a process, socket or thread cannot be made.
  ProcessCore(std::size_t workers, ProcessPoolOptions options);
  // terminate() if shutdown() was never called with wait, else joins what is left.
  ~ProcessCore();
  ProcessCore(const ProcessCore&) = delete;
  ProcessCore& operator=(const ProcessCore&) = delete;

  std::size_t worker_count() const noexcept { return workers_; }
  const std::shared_ptr<FailureLog>& failures() const noexcept { return failures_; }
  std::chrono::milliseconds task_timeout_or_zero() const noexcept;

  // Queues a job. Throws: crew::PoolClosed after shutdown(); crew::BrokenPool once broken.
  void enqueue(std::shared_ptr<ProcessJob> job);
  // A fresh id for the chunks of one map run.
  std::uint64_t new_group();
  // Drops the queued jobs of `group` (on_failure with crew::Cancelled, started = false); with
  // kill_running, also SIGKILLs the workers running its jobs (on_failure, started = true) and
  // replaces them.
  void cancel_group(std::uint64_t group, bool kill_running);

  ShutdownReport shutdown(const ShutdownOptions& options);
  void terminate();
  bool closed() const;
  // The reason the pool broke, or "" while it works.
  std::string broken_reason() const;

  ProcessPoolStats stats() const;
  std::vector<pid_t> worker_pids() const;
  pid_t zygote_pid() const noexcept;

  void log(const std::string& line) const;

  class Impl;

 private:
  std::size_t workers_;
  std::shared_ptr<FailureLog> failures_ = std::make_shared<FailureLog>();
  std::unique_ptr<Impl> impl_;
};

// Writes a failed reply: status, the exception's type name and its what().
void write_task_failure(ByteWriter& reply, const std::exception_ptr& error) noexcept;
// Reads the failure written by write_task_failure (after its status byte) as crew::TaskFailed.
std::exception_ptr read_task_failure(ByteReader& reply);

}  // namespace crew::detail
