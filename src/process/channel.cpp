#include "process/channel.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace crew::detail {
namespace {

constexpr int kSocketBufferBytes = 4 << 20;  // the kernel caps it at net.core.*mem_max

bool peer_gone(int error) { return error == EPIPE || error == ECONNRESET; }

}  // namespace

bool send_frame(int fd, FrameKind kind, std::initializer_list<std::string_view> parts) {
  FrameHeader header{.kind = kind, .size = 0};
  for (auto part : parts) header.size += part.size();
  iovec iov[8];
  std::size_t count = 0;
  iov[count++] = {&header, sizeof header};
  for (auto part : parts) {
    if (part.empty()) continue;
    if (count == std::size(iov)) throw std::logic_error("crew: too many frame parts");
    iov[count++] = {const_cast<char*>(part.data()), part.size()};
  }
  iovec* next = iov;
  while (count > 0) {
    msghdr message{};
    message.msg_iov = next;
    message.msg_iovlen = count;
    const ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (peer_gone(errno)) return false;
      throw std::system_error(errno, std::generic_category(), "crew: sendmsg to a worker");
    }
    auto left = static_cast<std::size_t>(sent);
    while (count > 0 && left >= next->iov_len) {
      left -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + left;
      next->iov_len -= left;
    }
  }
  return true;
}

bool read_exact(int fd, void* data, std::size_t size) {
  auto* at = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t got = ::read(fd, at, size);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (peer_gone(errno)) return false;
      throw std::system_error(errno, std::generic_category(), "crew: read from a worker socket");
    }
    if (got == 0) return false;
    at += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

bool recv_frame(int fd, FrameKind& kind, FrameBuffer& body) {
  FrameHeader header{};
  if (!read_exact(fd, &header, sizeof header)) return false;
  kind = header.kind;
  char* data = body.prepare(header.size);
  return read_exact(fd, data, header.size);
}

bool send_with_fd(int fd, const void* data, std::size_t size, int passed) {
  iovec iov{const_cast<void*>(data), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  if (passed >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &passed, sizeof(int));
  }
  for (;;) {
    const ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent >= 0) {
      // Small control messages go in one piece on a Unix stream socket.
      if (static_cast<std::size_t>(sent) == size) return true;
      throw std::system_error(EMSGSIZE, std::generic_category(), "crew: short send with fd");
    }
    if (errno == EINTR) continue;
    if (peer_gone(errno)) return false;
    throw std::system_error(errno, std::generic_category(), "crew: sendmsg with fd");
  }
}

void make_socket_pair(int (&fds)[2]) {
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "crew: socketpair");
  }
  for (int fd : fds) {
    // Best effort: a smaller buffer only means more system calls per chunk.
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof kSocketBufferBytes);
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof kSocketBufferBytes);
  }
}

}  // namespace crew::detail
