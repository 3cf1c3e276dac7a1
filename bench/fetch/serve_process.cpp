#include "fetch/serve_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

namespace crew_bench {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string crew_cli_path() {
  const char* chosen = std::getenv("CREW_BENCH_CREW");
  if (chosen != nullptr && *chosen != '\0') return chosen;
#ifdef CREW_BENCH_CREW_CLI
  return CREW_BENCH_CREW_CLI;
#else
  return "crew";
#endif
}

// Everything in `fd` from its start (a memfd the child wrote its stderr to).
std::string read_all_from_start(int fd) {
  std::string text;
  if (fd < 0 || ::lseek(fd, 0, SEEK_SET) != 0) return text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

// Waits up to `timeout` for `pid` to exit; true once it is reaped.
bool reap_within(pid_t pid, std::chrono::milliseconds timeout) noexcept {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid || (got < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    ::usleep(1'000);
  }
}

// The unsigned number after `"key":` in `json`, or nullopt.
std::optional<std::uint64_t> json_count(const std::string& json, const char* key) {
  const std::string quoted = std::string("\"") + key + "\":";
  const std::size_t at = json.find(quoted);
  if (at == std::string::npos) return std::nullopt;
  std::size_t i = at + quoted.size();
  while (i < json.size() && json[i] == ' ') ++i;
  const char* begin = json.c_str() + i;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(begin, &end, 10);
  if (end == begin) return std::nullopt;
  return value;
}

}  // namespace

ServeProcess::ServeProcess(std::string_view latency, std::string_view body) {
  const std::string cli = crew_cli_path();
  const std::vector<std::string> args = {
      cli, "serve", "--port", "0", "--latency", std::string(latency), "--body", std::string(body)};
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2"));
  stdout_fd_ = out[0];
  stderr_fd_ = ::memfd_create("crew-serve-stderr", MFD_CLOEXEC);
  if (stderr_fd_ < 0) {
    const std::string error = errno_text("memfd_create");
    close_fd(out[1]);
    close_fd(stdout_fd_);
    throw std::runtime_error(error);
  }
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();

  // fork, not posix_spawn: the child asks for SIGTERM when its parent dies before it execs.
  // Between fork and exec only async-signal-safe calls.
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (dev_null >= 0) ::dup2(dev_null, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(stderr_fd_, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    static constexpr char kFailed[] =
        "crew_bench: cannot exec the crew CLI (build crew_cli, or set CREW_BENCH_CREW)\n";
    (void)!::write(STDERR_FILENO, kFailed, sizeof kFailed - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  close_fd(out[1]);
  if (dev_null >= 0) ::close(dev_null);
  if (pid < 0) {
    close_fd(stdout_fd_);
    close_fd(stderr_fd_);
    throw std::runtime_error(std::string("fork: ") + std::strerror(fork_errno));
  }
  pid_ = pid;

  // READY <port>, within 10 s.
  std::string line;
  std::string failure;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (failure.empty()) {
    const std::size_t newline = line.find('\n');
    if (newline != std::string::npos) {
      line.resize(newline);
      break;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      failure = "printed no READY line within 10 s";
      break;
    }
    pollfd p{.fd = stdout_fd_, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[256];
    const ssize_t got = ::read(stdout_fd_, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      failure = "exited before printing READY";
      break;
    }
    line.append(buffer, static_cast<std::size_t>(got));
  }
  if (failure.empty()) {
    if (line.rfind("READY ", 0) != 0) {
      failure = "printed \"" + line + "\" instead of READY <port>";
    } else {
      const long port = std::strtol(line.c_str() + 6, nullptr, 10);
      if (port <= 0 || port > 65535) {
        failure = "printed a bad port: \"" + line + "\"";
      } else {
        port_ = static_cast<std::uint16_t>(port);
      }
    }
  }
  if (!failure.empty()) {
    ::kill(pid_, SIGKILL);
    (void)reap_within(pid_, std::chrono::seconds(10));
    pid_ = -1;
    std::string message = cli + " serve " + failure;
    const std::string err = read_all_from_start(stderr_fd_);
    if (!err.empty()) message += ": " + err;
    close_fd(stdout_fd_);
    close_fd(stderr_fd_);
    throw std::runtime_error(message);
  }
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!reap_within(pid_, std::chrono::seconds(10))) {
      ::kill(pid_, SIGKILL);
      (void)reap_within(pid_, std::chrono::seconds(10));
    }
  }
  close_fd(stdout_fd_);
  close_fd(stderr_fd_);
}

double ServeProcess::cpu_seconds() const {
  const std::string path = "/proc/" + std::to_string(pid_) + "/stat";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[1024];
  const ssize_t got = ::read(fd, buffer, sizeof buffer - 1);
  ::close(fd);
  if (got <= 0) return 0;
  buffer[got] = '\0';
  // Fields after the command name (which may hold spaces, so start after its last ')'): state is
  // field 3, utime 14, stime 15.
  const char* at = std::strrchr(buffer, ')');
  if (at == nullptr) return 0;
  ++at;
  unsigned long long ticks[2] = {0, 0};
  for (int field = 3; field <= 15 && *at != '\0'; ++field) {
    while (*at == ' ') ++at;
    char* end = nullptr;
    if (field >= 14) {
      ticks[field - 14] = std::strtoull(at, &end, 10);
      at = end;
    } else {
      while (*at != ' ' && *at != '\0') ++at;
    }
  }
  return static_cast<double>(ticks[0] + ticks[1]) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

ServeStats ServeProcess::stats() const {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port_);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    throw std::runtime_error(errno_text("connect to crew serve"));
  }
  const std::string request = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    throw std::runtime_error(errno_text("send to crew serve"));
  }
  // Read until the whole body (Content-Length) is in, or the server closes.
  std::string reply;
  char buffer[4096];
  for (;;) {
    const std::size_t head_end = reply.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const std::size_t length_at = reply.find("Content-Length:");
      if (length_at != std::string::npos && length_at < head_end) {
        const std::size_t length = std::strtoul(reply.c_str() + length_at + 15, nullptr, 10);
        if (reply.size() >= head_end + 4 + length) break;
      }
    }
    const ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw std::runtime_error(errno_text("recv from crew serve"));
    if (got == 0) break;
    reply.append(buffer, static_cast<std::size_t>(got));
  }
  const auto requests = json_count(reply, "requests");
  const auto connections = json_count(reply, "connections");
  const auto peak = json_count(reply, "peak_in_flight");
  if (!requests || !connections || !peak) {
    throw std::runtime_error("crew serve's /stats has no counters: " + reply);
  }
  return {.requests = *requests, .connections = *connections, .peak_in_flight = *peak};
}

}  // namespace crew_bench
