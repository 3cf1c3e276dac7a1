// The crew command's standard streams, which the caller may have closed, filled (/dev/full) or
// connected to a pipe nobody reads. stderr carries diagnostics: writing them is best effort and
// never changes what a command does or its exit code. stdout carries the answers: losing them is a
// failure, reported once at exit as coreutils' close_stdout does (a line on stderr, exit 1).
#pragma once

#include <fmt/format.h>

#include <new>
#include <string_view>
#include <system_error>
#include <utility>

namespace crew::cli {

// Opens /dev/null on each of descriptors 0, 1 and 2 that is closed, in the direction that makes
// every use fail with EBADF (stdin write-only, stdout and stderr read-only, as glibc does for
// set-user-ID programs): a closed stdout still loses the answer, but no socket or file that crew
// opens later becomes descriptor 1 or 2 and receives its output. Call first in main.
// Thread safety: call before any other thread starts.
void reserve_standard_descriptors() noexcept;

// Writes `text` on stderr and flushes it, best effort: a failed write is ignored, never thrown (a
// write on a pipe nobody reads, with SIGPIPE at its default action, still ends the process, as it
// ends any Unix program). Thread safety: safe (stdio locks the stream).
void print_diagnostic(std::string_view text) noexcept;

// fmt::print(stderr, …) that never throws (fmt::print throws when the write fails).
template <class... Args>
void print_diagnostic(fmt::format_string<Args...> format, Args&&... args) noexcept {
  try {
    print_diagnostic(std::string_view(fmt::format(format, std::forward<Args>(args)...)));
  } catch (const std::bad_alloc&) {
    // A diagnostic that cannot be formatted is dropped, like one that cannot be written.
  }
}

// Writes `text` on stdout and flushes it. A failure sets stdout's error indicator, as any stdio
// write does, and keeps the errno for close_stdout's message (a later flush no longer knows it:
// glibc drops the buffer of a failed write). Never throws. Thread safety: safe.
void write_stdout(std::string_view text) noexcept;

// std::fflush(stdout), keeping the errno of a failure for close_stdout. Thread safety: safe.
void flush_stdout() noexcept;

// Keeps `error` (an errno) as the reason stdout failed, unless one is kept already.
void note_stdout_error(int error) noexcept;

// Whether an error from fmt::print or a stdio call was a failed write on stdout: stdout's error
// indicator is set. Thread safety: safe.
[[nodiscard]] bool stdout_failed() noexcept;

// Flushes stdout and checks that everything written to it arrived. When it did not, prints
// "crew: error: cannot write to stdout: <reason>" on stderr (best effort) and returns 1 if
// `exit_code` was 0; a failure already reported keeps its code. `known` is the error of a write
// that already failed (from a caught std::system_error), used for the reason when the flush
// itself no longer says it. Call once, at the end of main. Thread safety: safe.
[[nodiscard]] int close_stdout(int exit_code, std::error_code known = {}) noexcept;

}  // namespace crew::cli
