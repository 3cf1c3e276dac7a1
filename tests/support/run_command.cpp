#include "support/run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

extern char** environ;

namespace crew::testing {
namespace {

void check(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

// Closes the descriptors of a pipe on scope exit unless released.
struct PipeFds {
  int fds[2] = {-1, -1};
  ~PipeFds() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

// posix_spawn attributes and file actions, destroyed on scope exit.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    check(posix_spawnattr_init(&attr), "posix_spawnattr_init");
    check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init");
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, SpawnOptions options)
    : own_group_(options.own_process_group), start_(std::chrono::steady_clock::now()) {
  // O_CLOEXEC: the pipes reach only this child (dup2 onto 1 and 2 clears the flag there), never a
  // child that another test thread spawns at the same time.
  PipeFds out;
  PipeFds err;
  if (pipe2(out.fds, O_CLOEXEC) != 0) check(errno, "pipe2");
  if (options.stderr_is_terminal) {
    // fds[0] the master (read here), fds[1] the terminal the child writes to, as with a pipe.
    err.fds[0] = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (err.fds[0] < 0) check(errno, "posix_openpt");
    if (grantpt(err.fds[0]) != 0 || unlockpt(err.fds[0]) != 0) check(errno, "grantpt");
    char name[128];
    if (const int rc = ptsname_r(err.fds[0], name, sizeof name); rc != 0) check(rc, "ptsname_r");
    err.fds[1] = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (err.fds[1] < 0) check(errno, "open pty");
  } else if (pipe2(err.fds, O_CLOEXEC) != 0) {
    check(errno, "pipe2");
  }

  SpawnSetup setup;
  check(posix_spawn_file_actions_addopen(&setup.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0),
        "posix_spawn_file_actions_addopen");
  check(posix_spawn_file_actions_adddup2(&setup.actions, out.fds[1], STDOUT_FILENO),
        "posix_spawn_file_actions_adddup2");
  check(posix_spawn_file_actions_adddup2(&setup.actions, err.fds[1], STDERR_FILENO),
        "posix_spawn_file_actions_adddup2");

  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t empty;
  sigemptyset(&empty);
  check(posix_spawnattr_setsigmask(&setup.attr, &empty), "posix_spawnattr_setsigmask");
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  check(posix_spawnattr_setsigdefault(&setup.attr, &defaults), "posix_spawnattr_setsigdefault");
  if (own_group_) {
    flags |= POSIX_SPAWN_SETPGROUP;
    check(posix_spawnattr_setpgroup(&setup.attr, 0), "posix_spawnattr_setpgroup");
  }
  check(posix_spawnattr_setflags(&setup.attr, flags), "posix_spawnattr_setflags");

  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view name = std::string_view(*entry).substr(0, std::strcspn(*entry, "="));
    const bool replaced = std::any_of(options.env.begin(), options.env.end(), [&](auto& e) {
      return e.size() > name.size() && e.compare(0, name.size(), name) == 0 &&
             e[name.size()] == '=';
    });
    if (!replaced) env.push_back(*entry);
  }
  for (const std::string& entry : options.env) env.push_back(const_cast<char*>(entry.c_str()));
  env.push_back(nullptr);
  check(posix_spawn(&pid_, args[0], &setup.actions, &setup.attr, args.data(), env.data()),
        "posix_spawn");

  out_fd_ = std::exchange(out.fds[0], -1);
  err_fd_ = std::exchange(err.fds[0], -1);
}

ChildProcess::~ChildProcess() {
  kill_and_reap();
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

void ChildProcess::kill_and_reap() noexcept {
  if (reaped_ || pid_ <= 0) return;
  kill(own_group_ ? -pid_ : pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

std::optional<std::string> ChildProcess::read_stdout_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const std::size_t newline = out_read_.find('\n', out_lines_);
    if (newline != std::string::npos) {
      std::string line = out_read_.substr(out_lines_, newline - out_lines_);
      out_lines_ = newline + 1;
      return line;
    }
    if (out_fd_ < 0) return std::nullopt;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd fd = {out_fd_, POLLIN, 0};
    const int ready = poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char buffer[4096];
    const ssize_t n = read(out_fd_, buffer, sizeof buffer);
    if (n > 0) {
      out_read_.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      close(out_fd_);
      out_fd_ = -1;
    }
  }
}

CommandResult ChildProcess::wait(std::chrono::milliseconds timeout) {
  CommandResult result;
  result.out = std::move(out_read_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto remaining_ms = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
  };

  // Both pipes are drained together: a child blocked writing a full stderr pipe while we wait on
  // its stdout would never finish.
  while ((out_fd_ >= 0 || err_fd_ >= 0) && !result.timed_out) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, remaining_ms());
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      result.timed_out = true;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        // EOF; or EIO, what a terminal's master reads once the child's side is closed.
        int& fd = i == 0 ? out_fd_ : err_fd_;
        close(fd);
        fd = -1;
      }
    }
  }

  // The pipes closed; the child may still be exiting (or may have handed its pipes on and kept
  // running). Poll for its exit until the deadline.
  int status = 0;
  while (!result.timed_out) {
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      reaped_ = true;
      break;
    }
    if (done < 0 && errno != EINTR) {
      throw std::system_error(errno, std::generic_category(), "waitpid");
    }
    if (remaining_ms() == 0) {
      result.timed_out = true;
      break;
    }
    usleep(1000);
  }
  if (result.timed_out) {
    kill(own_group_ ? -pid_ : pid_, SIGKILL);
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  result.wall = std::chrono::steady_clock::now() - start_;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  ChildProcess child(argv);
  return child.wait(timeout);
}

unsigned long long signal_set(pid_t pid, std::string_view field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  const std::string prefix = std::string(field) + ":";
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with(prefix)) {
      try {
        return std::stoull(line.substr(prefix.size()), nullptr, 16);
      } catch (const std::exception&) {
        return 0;
      }
    }
  }
  return 0;
}

std::chrono::milliseconds cpu_time(pid_t pid) {
  std::string text;
  try {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    text.assign(std::istreambuf_iterator<char>(stat), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure&) {
    return {};  // it exited while we read (read() fails with ESRCH, libstdc++ throws)
  }
  // The command name (field 2) may hold spaces and ')': count fields from the last ')'.
  const std::size_t paren = text.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream fields(text.substr(paren + 1));
  std::string field;
  long long ticks = 0;
  // Field 3 (state) comes first; utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index >= 14) ticks += std::stoll(field);
  }
  const long per_second = sysconf(_SC_CLK_TCK);
  return std::chrono::milliseconds(per_second > 0 ? ticks * 1000 / per_second : 0);
}

std::string crew_cli() {
  const char* path = std::getenv("CREW_CLI");
  return path == nullptr ? std::string() : std::string(path);
}

CommandResult run_crew(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  args.insert(args.begin(), crew_cli());
  return run_command(args, timeout);
}

}  // namespace crew::testing
