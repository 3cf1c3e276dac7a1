// Length-prefixed frames over a Unix stream socket, and descriptor passing. Partial reads and
// writes and EINTR are handled here and nowhere else. Sends use MSG_NOSIGNAL: writing to a dead
// peer returns false instead of raising SIGPIPE in the host program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace crew::detail {

enum class FrameKind : std::uint32_t {
  kRequest = 1,     // host → worker: u64 entry, u64 function, payload
  kQuit = 2,        // host → worker: exit now (retirement after max_tasks_per_child)
  kReady = 3,       // worker → host: initializer done, ready for requests
  kInitFailed = 4,  // worker → host: the initializer threw; body: its description
  kReply = 5,       // worker → host: ReplyHeader, payload
};

struct FrameHeader {
  FrameKind kind;
  std::uint32_t reserved = 0;
  std::uint64_t size;  // bytes after this header
};

// What a worker measured for one request; precedes the entry's reply payload.
struct ReplyHeader {
  std::int64_t wall_ns;
  std::int64_t cpu_ns;
  std::int64_t peak_rss_kib;
};

// A receive buffer that never shrinks, so a steady stream of same-size frames allocates once and
// never zero-fills.
class FrameBuffer {
 public:
  char* prepare(std::size_t size) {
    if (storage_.size() < size) storage_.resize(size);
    size_ = size;
    return storage_.data();
  }
  const char* data() const noexcept { return storage_.data(); }
  std::size_t size() const noexcept { return size_; }

 private:
  std::vector<char> storage_;
  std::size_t size_ = 0;
};

// Sends one frame made of `parts`. Blocks until all is written. Returns false when the peer is
// gone (EPIPE, ECONNRESET). Throws: std::system_error on any other error.
bool send_frame(int fd, FrameKind kind, std::initializer_list<std::string_view> parts);

// Receives one frame. Blocks until it is complete. Returns false at end of stream (the peer
// closed or died), even mid-frame. Throws: std::system_error on any other error.
bool recv_frame(int fd, FrameKind& kind, FrameBuffer& body);

// Reads exactly `size` bytes. false at end of stream. Throws: std::system_error.
bool read_exact(int fd, void* data, std::size_t size);

// Sends `size` bytes and, with them, descriptor `passed` (SCM_RIGHTS), or no descriptor when
// passed < 0. Returns false when the peer is gone.
bool send_with_fd(int fd, const void* data, std::size_t size, int passed);

// Makes a connected pair of Unix stream sockets with close-on-exec set, and large buffers so a
// map chunk crosses in few system calls. Throws: std::system_error.
void make_socket_pair(int (&fds)[2]);

}  // namespace crew::detail
