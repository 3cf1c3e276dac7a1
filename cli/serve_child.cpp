#include "serve_child.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace crew::cli {
namespace {

// Reads from `fd` until a '\n', EOF or the deadline. Returns what it read.
std::string read_line(int fd, std::chrono::steady_clock::time_point deadline) {
  std::string line;
  char c = 0;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    line += c;
  }
  return line;
}

std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0)
    text.append(buffer, static_cast<std::size_t>(n));
  return text;
}

}  // namespace

ServeChild::ServeChild(std::chrono::milliseconds latency, std::uint64_t body_bytes) {
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("crew serve: pipe failed");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error("crew serve: pipe failed");
  }
  const std::string latency_text = fmt::format("{}ms", latency.count());
  const std::string body_text = fmt::format("{}", body_bytes);
  std::vector<const char*> argv = {"crew",   "serve",           "--port",
                                   "0",      "--latency",       latency_text.c_str(),
                                   "--body", body_text.c_str(), nullptr};
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    const int error = errno;
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    throw std::runtime_error(fmt::format("crew serve: fork failed: {}", std::strerror(error)));
  }
  if (pid_ == 0) {
    // The child: die with the parent; stdout and stderr to the pipes; signals as a fresh process
    // would have them (crew serve blocks SIGINT and SIGTERM itself, for its sigwait).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    // Out of the terminal's process group: a Ctrl-C stops the command, which then stops the
    // server, rather than the server vanishing under requests still in flight.
    ::setpgid(0, 0);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  const std::string line =
      read_line(out[0], std::chrono::steady_clock::now() + std::chrono::seconds(10));
  ::close(out[0]);
  if (line.rfind("READY ", 0) != 0) {
    stop();
    const std::string said = read_all(err[0]);
    ::close(err[0]);
    throw std::runtime_error(
        fmt::format("crew serve did not start{}{}", said.empty() ? "" : ": ", said));
  }
  ::close(err[0]);
  port_ = static_cast<std::uint16_t>(std::stoi(line.substr(6)));
}

ServeChild::~ServeChild() { stop(); }

void ServeChild::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 500; ++i) {
    const pid_t done = ::waitpid(pid_, nullptr, WNOHANG);
    if (done == pid_ || (done < 0 && errno != EINTR)) {
      pid_ = -1;
      return;
    }
    ::usleep(10'000);
  }
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

double ServeChild::cpu_seconds() const {
  std::ifstream stat(fmt::format("/proc/{}/stat", pid_));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const std::size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  double ticks = 0;
  // Fields 3… after the name: utime and stime are the 12th and 13th of those.
  for (int i = 1; i <= 13 && fields >> field; ++i) {
    if (i >= 12) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace crew::cli
