// Input that a stop request can interrupt: the URL list of `crew fetch` may come from a terminal, a
// pipe or a FIFO whose writer is silent, and Ctrl-C must end that wait as it ends a run.
#pragma once

#include <array>
#include <stdexcept>
#include <stop_token>
#include <streambuf>
#include <string>

namespace crew::cli {

// Thrown out of a read when the stop token fires while the read waits for input.
class InputStopped : public std::runtime_error {
 public:
  InputStopped() : std::runtime_error("stopped while waiting for input") {}
};

// A std::streambuf over a descriptor (closed by the destructor when `owns_fd`), read with poll so
// that a stop request is seen within 100 ms while no data comes. A read error ends the input (end
// of file) and is kept in error(). Blocks: in underflow, until data, the end, an error or a stop.
// Throws: InputStopped from underflow (through sbumpc/sgetc) on a stop. Thread safety: one reader.
class StoppableInputBuffer : public std::streambuf {
 public:
  StoppableInputBuffer(int fd, std::stop_token stop, bool owns_fd = false)
      : fd_(fd), owns_fd_(owns_fd), stop_(std::move(stop)) {}
  ~StoppableInputBuffer() override;
  StoppableInputBuffer(const StoppableInputBuffer&) = delete;
  StoppableInputBuffer& operator=(const StoppableInputBuffer&) = delete;

  // The errno of the read that failed, or 0.
  [[nodiscard]] int error() const noexcept { return error_; }

 protected:
  int_type underflow() override;

 private:
  int fd_;
  bool owns_fd_;
  std::stop_token stop_;
  int error_ = 0;
  std::array<char, 64 * 1024> buffer_{};
};

// Opens `path` for reading without waiting for a FIFO's writer (O_NONBLOCK; the reads then wait in
// StoppableInputBuffer, where a stop can end them). Returns the descriptor, or -1 with errno set.
[[nodiscard]] int open_stoppable_input(const std::string& path) noexcept;

}  // namespace crew::cli
