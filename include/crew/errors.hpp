// crew's error types. Every error crew itself raises derives from crew::Error; a task's own
// exception is carried back unchanged by the thread engine (Future::get rethrows the very object).
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace crew {

// Base of every error crew raises itself.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The task was cancelled before it ran (Future::cancel, shutdown with cancel_pending, a map whose
// stop token fired, or a map that stopped because another of its items failed).
class Cancelled : public Error {
 public:
  using Error::Error;
};

// The pool no longer accepts work: submit, map or a further chunk of a running imap after
// shutdown().
class PoolClosed : public Error {
 public:
  using Error::Error;
};

// The pool cannot run work any more; what() says why (e.g. "initializer failed: …").
class BrokenPool : public Error {
 public:
  using Error::Error;
};

// A task failed somewhere its exception object cannot come back from (another process or machine):
// carries the exception's type name and its what().
class TaskFailed : public Error {
 public:
  TaskFailed(std::string type_name, std::string message)
      : Error(type_name + ": " + message),
        type_name_(std::move(type_name)),
        message_(std::move(message)) {}
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_name_;
  std::string message_;
};

// A value could not be encoded or decoded on its way to or from a worker process. Fails the one
// task whose value it was, never the pool.
class SerializationError : public Error {
 public:
  using Error::Error;
};

// The worker process running the task died (killed by a signal, or exited) before it replied.
// what(): "worker 1234 died (killed by SIGSEGV) while running the task".
class WorkerCrashed : public Error {
 public:
  WorkerCrashed(int pid, int signal, int exit_code, std::string message)
      : Error(std::move(message)), pid_(pid), signal_(signal), exit_code_(exit_code) {}
  int pid() const noexcept { return pid_; }
  // The signal that killed the worker, or 0 when it exited.
  int signal() const noexcept { return signal_; }
  // The worker's exit status when it exited, or -1 when a signal killed it.
  int exit_code() const noexcept { return exit_code_; }

 private:
  int pid_;
  int signal_;
  int exit_code_;
};

// The task ran past its pool's task_timeout. A ProcessPool stops the worker (SIGTERM, a short
// grace, then SIGKILL) and starts a new one.
class TaskTimeout : public Error {
 public:
  using Error::Error;
};

// One line describing an exception: "std::runtime_error: boom", or "unknown exception (not derived
// from std::exception)". Used for logs, reports and errors that cross process boundaries.
// Throws: nothing. Thread safety: safe.
std::string describe_exception(const std::exception_ptr& error) noexcept;

// The demangled dynamic type name of the exception, e.g. "std::invalid_argument".
std::string exception_type_name(const std::exception_ptr& error) noexcept;

}  // namespace crew
