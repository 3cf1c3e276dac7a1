#include "stoppable_input.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace crew::cli {

StoppableInputBuffer::~StoppableInputBuffer() {
  if (owns_fd_) ::close(fd_);
}

StoppableInputBuffer::int_type StoppableInputBuffer::underflow() {
  if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
  constexpr int kStopCheckMs = 100;
  for (;;) {
    if (stop_.stop_requested()) throw InputStopped();
    pollfd ready{.fd = fd_, .events = POLLIN, .revents = 0};
    const int events = ::poll(&ready, 1, kStopCheckMs);
    if (events < 0 && errno != EINTR) {
      error_ = errno;
      return traits_type::eof();
    }
    if (events <= 0) continue;
    const ssize_t n = ::read(fd_, buffer_.data(), buffer_.size());
    if (n > 0) {
      setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
      return traits_type::to_int_type(*gptr());
    }
    if (n == 0) return traits_type::eof();
    // EAGAIN: a FIFO opened with O_NONBLOCK whose writer has not written yet.
    if (errno == EINTR || errno == EAGAIN) continue;
    error_ = errno;
    return traits_type::eof();
  }
}

int open_stoppable_input(const std::string& path) noexcept {
  return ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}

}  // namespace crew::cli
