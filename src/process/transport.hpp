// The host's side of a worker's socket: frames in and out without ever blocking. The dispatcher
// thread serves every worker from one epoll loop, so a blocking send to a worker that is itself
// blocked sending a reply (a 16 MB argument against a 16 MB result) would stop the whole pool;
// here a send takes what the socket accepts now and keeps the rest queued, and a receive
// assembles a frame across as many reads as it takes. Frames are those of channel.hpp (which the
// worker keeps using, blocking: a worker has nothing else to do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "channel.hpp"

namespace crew::detail {

// Sets O_NONBLOCK. Throws: std::system_error.
void set_nonblocking(int fd);

// Receives a spawn reply of `size` bytes from the zygote and the worker's socket with it (-1 if
// none). `truncated`: a descriptor was sent but the kernel dropped it (MSG_CTRUNC) because this
// process is at its RLIMIT_NOFILE; the worker exists all the same. Returns false at end of stream.
// Throws: std::system_error.
bool recv_spawn_reply(int fd, void* data, std::size_t size, int& passed, bool& truncated);

// What a read or write found.
enum class IoStatus {
  kOpen,     // the socket is open; nothing more to do now
  kEnd,      // end of stream, or the peer is gone (EPIPE, ECONNRESET)
  kGarbage,  // received bytes that are not a frame (see FrameReader::error)
};

// Incoming frames, assembled from non-blocking reads. Small frames share one read; a large one is
// read straight into a buffer of its size, which is let go once the frame is consumed, so a 300 MB
// result does not stay resident after it was decoded.
class FrameReader {
 public:
  // A frame larger than this is garbage: no reply is that large, and a size read from a corrupted
  // stream must not turn into a huge allocation.
  static constexpr std::uint64_t kMaxFrameBytes = std::uint64_t{1} << 36;  // 64 GiB
  // Capacity kept between frames; a larger buffer is freed after its frame.
  static constexpr std::size_t kRetainBytes = std::size_t{1} << 20;

  // Returns true with `kind` and `body` set when a whole frame is buffered or could be read now;
  // `body` stays valid until the next call. Returns false with `status` kOpen when the socket has
  // no more bytes now, kEnd at end of stream, kGarbage for a header no worker writes (error()
  // says why). Never blocks (the socket is non-blocking). Throws: std::system_error on an
  // unexpected read error.
  bool next(int fd, FrameKind& kind, std::string_view& body, IoStatus& status);

  // Why the last next() returned kGarbage.
  const std::string& error() const noexcept { return error_; }
  // Bytes held now (for tests of the shrinking rule).
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  void consume_delivered();
  bool reserve(std::size_t bytes);  // false: out of memory

  std::unique_ptr<char[]> buffer_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;      // first unconsumed byte
  std::size_t end_ = 0;        // one past the last byte read
  std::size_t delivered_ = 0;  // bytes of the frame handed out by the last next(), consumed next
  std::string error_;
};

// Outgoing frames, queued and written as the socket takes them. A frame's body is not copied: its
// owner (the job whose request it is) is kept alive until the frame is written or dropped.
class FrameWriter {
 public:
  // Queues a frame of `prefix` (copied; at most 16 bytes) and `body` (kept by `owner`).
  void queue(FrameKind kind, std::string_view prefix, std::string_view body,
             std::shared_ptr<const void> owner);
  // Writes what the socket takes now. kOpen: written or queued (see pending()); kEnd: the peer is
  // gone. Never blocks. Throws: std::system_error on an unexpected error.
  IoStatus flush(int fd);
  // Something is queued: the caller waits for EPOLLOUT.
  bool pending() const noexcept { return !frames_.empty(); }
  // Drops every queued frame (the socket is being closed).
  void clear() noexcept { frames_.clear(); }

 private:
  struct Frame {
    char head[sizeof(FrameHeader) + 16];
    std::size_t head_size = 0;
    std::string_view body;
    std::shared_ptr<const void> owner;
    std::size_t offset = 0;  // bytes of head + body written
  };
  std::deque<Frame> frames_;
};

}  // namespace crew::detail
