// The host's non-blocking frame transport (src/process/transport.hpp): frames assembled across
// reads, partial writes queued, buffers let go after an outsized frame, garbage recognised.
#include "../../src/process/transport.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace crew::detail {
namespace {

struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    set_nonblocking(fds[0]);
    set_nonblocking(fds[1]);
  }
  ~SocketPair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

struct Received {
  FrameKind kind{};
  std::string body;
};

// Reads frames from `fd` until `count` arrived, flushing `writer` into `out_fd` meanwhile (one
// thread plays both ends, so neither side may block).
std::vector<Received> pump(FrameWriter& writer, int out_fd, FrameReader& reader, int in_fd,
                           std::size_t count, std::size_t* peak_capacity = nullptr) {
  std::vector<Received> frames;
  while (frames.size() < count) {
    EXPECT_EQ(writer.flush(out_fd), IoStatus::kOpen);
    FrameKind kind{};
    std::string_view body;
    IoStatus status = IoStatus::kOpen;
    while (reader.next(in_fd, kind, body, status)) {
      if (peak_capacity != nullptr) *peak_capacity = std::max(*peak_capacity, reader.capacity());
      frames.push_back({kind, std::string(body)});
    }
    EXPECT_EQ(status, IoStatus::kOpen);
    if (status != IoStatus::kOpen || frames.size() >= count) break;
    pollfd wait[2] = {{in_fd, POLLIN, 0},
                      {out_fd, writer.pending() ? short(POLLOUT) : short(0), 0}};
    ::poll(wait, 2, 1000);
  }
  return frames;
}

TEST(TransportTest, LargeFrameCrossesInPiecesBetweenSmallOnes) {
  SocketPair pair;
  FrameWriter writer;
  FrameReader reader;
  auto big = std::make_shared<std::string>(8 << 20, 'b');
  for (char c : std::string("abc")) big->at(static_cast<std::size_t>(c) * 1000) = c;
  writer.queue(FrameKind::kReply, "head", "small one", nullptr);
  writer.queue(FrameKind::kRequest, "0123456789abcdef", *big, big);
  writer.queue(FrameKind::kQuit, {}, {}, nullptr);
  EXPECT_EQ(writer.flush(pair.fds[0]), IoStatus::kOpen);
  EXPECT_TRUE(writer.pending()) << "8 MiB does not fit in a default socket buffer";
  const auto frames = pump(writer, pair.fds[0], reader, pair.fds[1], 3);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].kind, FrameKind::kReply);
  EXPECT_EQ(frames[0].body, "headsmall one");
  EXPECT_EQ(frames[1].kind, FrameKind::kRequest);
  EXPECT_EQ(frames[1].body, "0123456789abcdef" + *big);
  EXPECT_EQ(frames[2].kind, FrameKind::kQuit);
  EXPECT_EQ(frames[2].body, "");
  EXPECT_FALSE(writer.pending());
  EXPECT_EQ(big.use_count(), 1) << "the writer lets the body's owner go once it is written";
}

TEST(TransportTest, ReaderLetsGoOfBufferAfterOutsizedFrame) {
  SocketPair pair;
  FrameWriter writer;
  FrameReader reader;
  auto big = std::make_shared<std::string>(32 << 20, 'x');
  writer.queue(FrameKind::kReply, {}, *big, big);
  writer.queue(FrameKind::kReply, {}, "after", nullptr);
  std::size_t peak = 0;
  const auto frames = pump(writer, pair.fds[0], reader, pair.fds[1], 2, &peak);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_GE(peak, std::size_t{32} << 20);
  // Consuming the last frame happens on the next call; nothing more is readable.
  FrameKind kind{};
  std::string_view body;
  IoStatus status = IoStatus::kOpen;
  EXPECT_FALSE(reader.next(pair.fds[1], kind, body, status));
  EXPECT_EQ(status, IoStatus::kOpen);
  EXPECT_LE(reader.capacity(), FrameReader::kRetainBytes);
}

TEST(TransportTest, AbsurdFrameSizeIsGarbageNotAnAllocation) {
  SocketPair pair;
  const std::uint32_t words[4] = {static_cast<std::uint32_t>(FrameKind::kReply), 0, 0, 1u << 30};
  ASSERT_EQ(::write(pair.fds[0], words, sizeof words), static_cast<ssize_t>(sizeof words));
  FrameReader reader;
  FrameKind kind{};
  std::string_view body;
  IoStatus status = IoStatus::kOpen;
  EXPECT_FALSE(reader.next(pair.fds[1], kind, body, status));
  EXPECT_EQ(status, IoStatus::kGarbage);
  EXPECT_NE(reader.error().find("4611686018427387904"), std::string::npos) << reader.error();
  EXPECT_LE(reader.capacity(), FrameReader::kRetainBytes);
}

TEST(TransportTest, UnknownKindIsGarbage) {
  SocketPair pair;
  const std::uint32_t words[4] = {0x41414141, 0x41414141, 4, 0};
  ASSERT_EQ(::write(pair.fds[0], words, sizeof words), static_cast<ssize_t>(sizeof words));
  FrameReader reader;
  FrameKind kind{};
  std::string_view body;
  IoStatus status = IoStatus::kOpen;
  EXPECT_FALSE(reader.next(pair.fds[1], kind, body, status));
  EXPECT_EQ(status, IoStatus::kGarbage);
}

TEST(TransportTest, EndOfStreamMidFrameIsEnd) {
  SocketPair pair;
  const std::uint32_t words[2] = {static_cast<std::uint32_t>(FrameKind::kReply), 0};
  ASSERT_EQ(::write(pair.fds[0], words, sizeof words), static_cast<ssize_t>(sizeof words));
  ::close(pair.fds[0]);
  pair.fds[0] = -1;
  FrameReader reader;
  FrameKind kind{};
  std::string_view body;
  IoStatus status = IoStatus::kOpen;
  EXPECT_FALSE(reader.next(pair.fds[1], kind, body, status));
  EXPECT_EQ(status, IoStatus::kEnd);
}

TEST(TransportTest, WriterReportsPeerGone) {
  SocketPair pair;
  ::close(pair.fds[1]);
  pair.fds[1] = -1;
  FrameWriter writer;
  writer.queue(FrameKind::kQuit, {}, {}, nullptr);
  EXPECT_EQ(writer.flush(pair.fds[0]), IoStatus::kEnd);
}

TEST(TransportTest, BlockingSenderAndNonBlockingReaderAgree) {
  // The worker side keeps channel.hpp's blocking send_frame; the host reads with FrameReader.
  SocketPair pair;
  const int sender = pair.fds[0];
  std::thread worker([sender] {
    const int flags = ::fcntl(sender, F_GETFL);
    ::fcntl(sender, F_SETFL, flags & ~O_NONBLOCK);
    const std::string big(5 << 20, 'w');
    for (int i = 0; i < 20; ++i) {
      (void)send_frame(sender, FrameKind::kReply, {std::to_string(i), i % 5 == 0 ? big : ""});
    }
  });
  FrameWriter idle;
  FrameReader reader;
  const auto frames = pump(idle, pair.fds[0], reader, pair.fds[1], 20);
  worker.join();
  ASSERT_EQ(frames.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(frames[i].body.size(), std::to_string(i).size() + (i % 5 == 0 ? (5u << 20) : 0u));
  }
}

}  // namespace
}  // namespace crew::detail
