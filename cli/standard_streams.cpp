#include "standard_streams.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace crew::cli {

void reserve_standard_descriptors() noexcept {
  for (const int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    // open returns the lowest free descriptor: `fd` itself, as the lower ones are open by now.
    const int opened = ::open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
    if (opened >= 0 && opened != fd) ::close(opened);  // cannot happen; keep no stray descriptor
  }
}

void print_diagnostic(std::string_view text) noexcept {
  // fwrite, not write(2): the text stays ordered with what the same thread printed before, and a
  // failure only sets stderr's error indicator, which nothing reads.
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

namespace {

// The errno of the first failed write or flush of stdout that was seen (0: none).
std::atomic<int> g_stdout_errno{0};

}  // namespace

void note_stdout_error(int error) noexcept {
  int none = 0;
  if (error != 0) g_stdout_errno.compare_exchange_strong(none, error);
}

void write_stdout(std::string_view text) noexcept {
  errno = 0;
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) note_stdout_error(errno);
  flush_stdout();
}

void flush_stdout() noexcept {
  errno = 0;
  if (std::fflush(stdout) != 0) note_stdout_error(errno);
}

bool stdout_failed() noexcept { return std::ferror(stdout) != 0; }

int close_stdout(int exit_code, std::error_code known) noexcept {
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  const int flush_error = errno;
  if (!flush_failed && std::ferror(stdout) == 0) return exit_code;
  std::string reason;
  if (flush_failed && flush_error != 0) {
    reason = std::strerror(flush_error);
  } else if (known) {
    reason = known.message();
  } else if (const int noted = g_stdout_errno.load(); noted != 0) {
    reason = std::strerror(noted);
  } else if (const int flags = ::fcntl(STDOUT_FILENO, F_GETFL);
             flags < 0 || (flags & O_ACCMODE) == O_RDONLY) {
    // stdout was closed (reserve_standard_descriptors put a read-only /dev/null there).
    reason = std::strerror(EBADF);
  } else {
    // An earlier flush failed and glibc dropped the buffer with its errno: say what is known.
    reason = "a write failed and the output was lost";
  }
  try {
    print_diagnostic(std::string_view("crew: error: cannot write to stdout: " + reason + "\n"));
  } catch (const std::bad_alloc&) {
    print_diagnostic(std::string_view("crew: error: cannot write to stdout\n"));
  }
  return exit_code == 0 ? 1 : exit_code;
}

}  // namespace crew::cli
