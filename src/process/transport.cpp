#include "process/transport.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>

namespace crew::detail {
namespace {

// A read asks for at least this much, so a burst of small replies costs one system call.
constexpr std::size_t kReadChunk = 64 << 10;
// Frames gathered into one sendmsg.
constexpr std::size_t kMaxIov = 64;

bool peer_gone(int error) { return error == EPIPE || error == ECONNRESET; }

bool known_kind(std::uint32_t kind) {
  switch (static_cast<FrameKind>(kind)) {
    case FrameKind::kRequest:
    case FrameKind::kQuit:
    case FrameKind::kReady:
    case FrameKind::kInitFailed:
    case FrameKind::kReply:
      return true;
  }
  return false;
}

}  // namespace

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::generic_category(), "crew: fcntl(O_NONBLOCK)");
  }
}

bool recv_spawn_reply(int fd, void* data, std::size_t size, int& passed, bool& truncated) {
  passed = -1;
  truncated = false;
  iovec iov{data, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t got;
  // The zygote sends each reply in one small sendmsg, so a readable socket holds all of it.
  do {
    got = ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    if (peer_gone(errno)) return false;
    throw std::system_error(errno, std::generic_category(), "crew: recvmsg from the zygote");
  }
  if (got == 0) return false;
  truncated = (message.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&passed, CMSG_DATA(header), sizeof(int));
    }
  }
  if (static_cast<std::size_t>(got) != size) {
    if (passed >= 0) ::close(passed);
    passed = -1;
    throw std::system_error(EPROTO, std::generic_category(), "crew: short spawn reply");
  }
  return true;
}

// --- FrameReader --------------------------------------------------------------------------------

void FrameReader::consume_delivered() {
  begin_ += delivered_;
  delivered_ = 0;
  if (begin_ == end_) begin_ = end_ = 0;
  if (capacity_ > kRetainBytes && end_ - begin_ <= kRetainBytes) {
    // The outsized frame is consumed: let its buffer go, keeping what was read past it.
    const std::size_t left = end_ - begin_;
    std::unique_ptr<char[]> smaller;
    if (left != 0) {
      smaller = std::make_unique_for_overwrite<char[]>(left);
      std::memcpy(smaller.get(), buffer_.get() + begin_, left);
    }
    buffer_ = std::move(smaller);
    capacity_ = left;
    begin_ = 0;
    end_ = left;
  }
}

bool FrameReader::reserve(std::size_t bytes) {
  // Room for `bytes` from begin_: slide down, or move to a buffer of the size needed.
  if (begin_ + bytes <= capacity_) return true;
  const std::size_t held = end_ - begin_;
  if (bytes <= capacity_) {
    std::memmove(buffer_.get(), buffer_.get() + begin_, held);
  } else {
    std::unique_ptr<char[]> bigger(new (std::nothrow) char[bytes]);
    if (!bigger) return false;
    if (held != 0) std::memcpy(bigger.get(), buffer_.get() + begin_, held);
    buffer_ = std::move(bigger);
    capacity_ = bytes;
  }
  begin_ = 0;
  end_ = held;
  return true;
}

bool FrameReader::next(int fd, FrameKind& kind, std::string_view& body, IoStatus& status) {
  consume_delivered();
  status = IoStatus::kOpen;
  for (;;) {
    std::size_t want = sizeof(FrameHeader);
    if (end_ - begin_ >= sizeof(FrameHeader)) {
      FrameHeader header{};
      std::memcpy(&header, buffer_.get() + begin_, sizeof header);
      const auto raw_kind = static_cast<std::uint32_t>(header.kind);
      if (!known_kind(raw_kind) || header.reserved != 0 || header.size > kMaxFrameBytes) {
        error_ = "received bytes that are not a frame (kind " + std::to_string(raw_kind) +
                 ", size " + std::to_string(header.size) + ")";
        status = IoStatus::kGarbage;
        return false;
      }
      want = sizeof(FrameHeader) + static_cast<std::size_t>(header.size);
      if (end_ - begin_ >= want) {
        kind = header.kind;
        body = std::string_view(buffer_.get() + begin_ + sizeof header, header.size);
        delivered_ = want;
        return true;
      }
    }
    // Read at least a chunk's worth, so the frames behind this one come in the same call.
    if (!reserve(std::max(want, std::min<std::size_t>(kReadChunk, kRetainBytes)))) {
      error_ = "a frame of " + std::to_string(want) + " bytes does not fit in memory";
      status = IoStatus::kGarbage;
      return false;
    }
    const ssize_t got = ::read(fd, buffer_.get() + end_, capacity_ - end_);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (peer_gone(errno)) {
        status = IoStatus::kEnd;
        return false;
      }
      throw std::system_error(errno, std::generic_category(), "crew: read from a worker socket");
    }
    if (got == 0) {
      status = IoStatus::kEnd;
      return false;
    }
    end_ += static_cast<std::size_t>(got);
  }
}

// --- FrameWriter --------------------------------------------------------------------------------

void FrameWriter::queue(FrameKind kind, std::string_view prefix, std::string_view body,
                        std::shared_ptr<const void> owner) {
  if (prefix.size() > 16) throw std::logic_error("crew: frame prefix over 16 bytes");
  Frame& frame = frames_.emplace_back();
  const FrameHeader header{.kind = kind, .size = prefix.size() + body.size()};
  std::memcpy(frame.head, &header, sizeof header);
  if (!prefix.empty()) std::memcpy(frame.head + sizeof header, prefix.data(), prefix.size());
  frame.head_size = sizeof header + prefix.size();
  frame.body = body;
  frame.owner = std::move(owner);
}

IoStatus FrameWriter::flush(int fd) {
  while (!frames_.empty()) {
    iovec iov[kMaxIov];
    std::size_t count = 0;
    for (const Frame& frame : frames_) {
      if (count + 2 > kMaxIov) break;
      std::size_t skip = frame.offset;  // only the front frame is partly written
      if (skip < frame.head_size) {
        iov[count++] = {const_cast<char*>(frame.head) + skip, frame.head_size - skip};
        skip = 0;
      } else {
        skip -= frame.head_size;
      }
      if (skip < frame.body.size()) {
        iov[count++] = {const_cast<char*>(frame.body.data()) + skip, frame.body.size() - skip};
      }
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    const ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::kOpen;
      if (peer_gone(errno)) return IoStatus::kEnd;
      throw std::system_error(errno, std::generic_category(), "crew: sendmsg to a worker");
    }
    auto left = static_cast<std::size_t>(sent);
    while (left > 0) {
      Frame& front = frames_.front();
      const std::size_t rest = front.head_size + front.body.size() - front.offset;
      if (left < rest) {
        front.offset += left;
        break;
      }
      left -= rest;
      frames_.pop_front();
    }
  }
  return IoStatus::kOpen;
}

}  // namespace crew::detail
