// crew-test-label: process
// What a worker process inherits and what it does to its tasks: no replay of the parent's stdio
// buffers, no crew descriptor in the programs a task starts, no signal while a task runs, and
// workers that still end promptly when their host is killed.
#include <dirent.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

int twice(int x) { return 2 * x; }
int sleep_forever(int) {
  for (;;) ::pause();
}

std::string temp_path(const char* stem) {
  return (::testing::TempDir() + stem) + "." + std::to_string(::getpid());
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// How many times each line occurs in `text`.
std::map<std::string, int> count_lines(const std::string& text) {
  std::map<std::string, int> counts;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) ++counts[line];
  return counts;
}

// While set, every fork() of this process first writes a numbered line into this stream without
// flushing it: a writer that got in between the host's flush of stdio and its fork (which a thread
// writing at any moment does now and then) is then there every time, not by chance.
std::FILE* g_note_before_fork = nullptr;
int g_fork_notes = 0;
std::atomic<long>* g_note_bytes = nullptr;  // where to count the bytes of the notes, if anywhere
void note_before_fork() {
  if (g_note_before_fork == nullptr) return;
  const int bytes = std::fprintf(g_note_before_fork, "fork %d\n", g_fork_notes++);
  if (g_note_bytes != nullptr) *g_note_bytes += bytes;
}
const bool kForkNoteInstalled = ::pthread_atfork(note_before_fork, nullptr, nullptr) == 0;

// A logger thread writes numbered lines into a FILE* opened before the pool, never flushing by
// hand, until the pool has started: at the fork its buffer holds lines (the host flushes stdio
// just before it forks, but the logger keeps writing). A worker must not flush that copy anywhere:
// in the worker the FILE's descriptor number used to be crew's socket, and the lines went into the
// protocol.
TEST(WorkerTest, LoggerFileOpenedBeforePoolIsNotReplayed) {
  const std::string path = temp_path("crew_logger");
  std::FILE* log = std::fopen(path.c_str(), "w");
  ASSERT_NE(log, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread logger([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      std::fprintf(log, "line %d\n", i);
      written.store(i + 1, std::memory_order_relaxed);
      if (i % 16 == 15) std::this_thread::yield();
    }
  });
  while (written.load() < 100) std::this_thread::yield();
  ASSERT_TRUE(kForkNoteInstalled);
  g_note_before_fork = log;
  // Ten pools of ten tasks: each fork is a fresh chance for the logger's buffer to hold lines.
  int failed = 0;
  std::string first_error;
  for (int round = 0; round < 10; ++round) {
    ProcessPool pool({.workers = 2, .warn_if_threads_running = false});
    std::vector<Future<int>> futures;
    for (int i = 0; i < 10; ++i) futures.push_back(pool.submit(twice, i));
    for (int i = 0; i < 10; ++i) {
      try {
        EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), 2 * i);
      } catch (const std::exception& error) {
        if (failed++ == 0) first_error = error.what();
      }
    }
  }
  g_note_before_fork = nullptr;
  stop.store(true);
  logger.join();
  const int fd = ::fileno(log);
  std::fclose(log);
  EXPECT_EQ(failed, 0) << "first failure: " << first_error << " (the log is descriptor " << fd
                       << ")";
  const auto counts = count_lines(read_all(path));
  EXPECT_EQ(counts.size(), static_cast<std::size_t>(written.load() + g_fork_notes));
  for (const auto& [line, count] : counts) {
    ASSERT_EQ(count, 1) << "\"" << line << "\" appears " << count << " times";
  }
  if (!HasFailure()) std::remove(path.c_str());
}

int print_line(int x) {
  std::printf("task %d\n", x);
  return x;
}

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t count = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

// A host whose stdout is a file (so fully buffered) prints lines it does not flush, and keeps
// printing from a thread while the pool starts. Runs in a child process so the test's own stdout
// stays as it is. The file must hold exactly what the host printed plus what the tasks printed:
// a worker discards the buffer it inherited. (The host's and the workers' writes interleave at
// buffer boundaries, so a task's line may follow half a line of the host's.)
TEST(WorkerTest, UnflushedStdoutIsPrintedOnce) {
  const std::string path = temp_path("crew_stdout");
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::FILE* file = std::freopen(path.c_str(), "w", stdout);
    if (file == nullptr) ::_exit(10);
    std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    std::atomic<long> host_bytes{0};  // what the host itself printed
    g_note_before_fork = stdout;
    g_note_bytes = &host_bytes;
    for (int i = 0; i < 10; ++i) host_bytes += std::printf("before %d\n", i);
    std::atomic<bool> stop{false};
    std::atomic<int> printed{0};
    std::thread printer([&] {
      for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        host_bytes += std::printf("during %d\n", i);
        printed.store(i + 1, std::memory_order_relaxed);
      }
    });
    while (printed.load() < 100) std::this_thread::yield();
    {
      ProcessPool pool({.workers = 3, .warn_if_threads_running = false});
      stop.store(true);
      printer.join();
      g_note_before_fork = nullptr;
      for (int round = 0; round < 5; ++round) {
        std::vector<Future<int>> futures;
        for (int i = 0; i < 3; ++i) futures.push_back(pool.submit(print_line, round * 3 + i));
        for (auto& future : futures) (void)future.get();
      }
    }
    std::FILE* count = std::fopen((path + ".bytes").c_str(), "w");
    if (count == nullptr) ::_exit(11);
    std::fprintf(count, "%ld\n", host_bytes.load());
    std::fclose(count);
    std::exit(0);  // flushes the host's own buffer once
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  const std::string text = read_all(path);
  const long host_bytes = std::atol(read_all(path + ".bytes").c_str());
  // A worker's stream copy may be torn by the printing thread (see worker_main.cpp), so a task's
  // line can even reach the file in two writes: count the lines' starts, and every byte.
  long task_bytes = 0;
  for (int i = 0; i < 15; ++i)
    task_bytes += static_cast<long>(("task " + std::to_string(i) + "\n").size());
  EXPECT_EQ(occurrences(text, "task "), 15u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(occurrences(text, "before " + std::to_string(i) + "\n"), 1u) << "before " << i;
  }
  EXPECT_EQ(occurrences(text, "fork "), 1u) << "the line written at the zygote's fork";
  EXPECT_EQ(static_cast<long>(text.size()), host_bytes + task_bytes)
      << "the file holds more than was printed: a worker printed the host's buffer again";
  if (!HasFailure()) {
    std::remove(path.c_str());
    std::remove((path + ".bytes").c_str());
  }
}

// What a program started by a task sees as its open descriptors.
std::string descriptors_of_a_program(int) {
  std::string listing;
  std::FILE* ls = ::popen("ls -l /proc/self/fd/", "r");
  if (ls == nullptr) return "popen failed";
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, ls) != nullptr) listing += buffer;
  ::pclose(ls);
  return listing;
}

TEST(WorkerTest, ProgramsATaskStartsInheritNoCrewDescriptor) {
  ProcessPool pool({.workers = 1});
  const std::string listing = pool.submit(descriptors_of_a_program, 0).get();
  ASSERT_NE(listing.find("/proc/"), std::string::npos) << listing;  // ls's own directory
  EXPECT_EQ(listing.find("socket:"), std::string::npos) << listing;
  EXPECT_EQ(listing.find("pidfd"), std::string::npos) << listing;
  EXPECT_EQ(listing.find("anon_inode"), std::string::npos) << listing;
}

// The descriptors open in the worker itself, as "number -> target" lines.
std::string descriptors_of_the_worker(int) {
  std::string listing;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return "opendir failed";
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.' || std::atoi(entry->d_name) == own) continue;
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + entry->d_name;
    (void)::readlink(link.c_str(), target, sizeof target - 1);
    listing += std::string(entry->d_name) + " -> " + target + "\n";
  }
  ::closedir(dir);
  return listing;
}

// Descriptor 3 and up are the task's: crew's socket sits far above them, and nothing the host had
// open is left in the worker.
TEST(WorkerTest, CrewDescriptorsStayClearOfLowNumbers) {
  const std::string path = temp_path("crew_fd");
  std::FILE* file = std::fopen(path.c_str(), "w");  // the host's own descriptor
  ASSERT_NE(file, nullptr);
  ProcessPool pool({.workers = 1});
  const std::string listing = pool.submit(descriptors_of_the_worker, 0).get();
  std::fclose(file);
  if (!HasFailure()) std::remove(path.c_str());
  std::istringstream in(listing);
  int sockets = 0;
  std::string line;
  while (std::getline(in, line)) {
    const int fd = std::atoi(line.c_str());
    if (fd <= 2) continue;
    EXPECT_NE(line.find("socket:"), std::string::npos) << "not crew's: " << line;
    EXPECT_GE(fd, 64) << line;
    ++sockets;
  }
  EXPECT_EQ(sockets, 1) << listing;
}

// How long a 2 s sleep took in the task, in milliseconds.
long timed_sleep(int seconds) {
  const auto start = Clock::now();
  ::sleep(static_cast<unsigned>(seconds));
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count());
}

TEST(WorkerTest, SleepInATaskIsNotCutShort) {
  ProcessPool pool({.workers = 1});
  const long took = pool.submit(timed_sleep, 2).get();
  EXPECT_GE(took, 1900) << "sleep(2) returned after " << took << " ms: a signal interrupted it";
}

bool interval_timer_armed(int) {
  itimerval timer{};
  ::getitimer(ITIMER_REAL, &timer);
  return timer.it_value.tv_sec != 0 || timer.it_value.tv_usec != 0;
}

TEST(WorkerTest, NoTimerIsArmedInAWorker) {
  ProcessPool pool({.workers = 1});
  EXPECT_FALSE(pool.submit(interval_timer_armed, 0).get());
}

bool process_exists(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// Forks a host that makes a pool of two, starts two endless tasks and, with `drain`, a draining
// shutdown; SIGKILLs the host; returns how long its workers and zygote outlived it (or 10 s and
// more when some are still there). The test process is a subreaper, so orphans come back to it.
milliseconds orphans_outlive_their_host(bool drain) {
  EXPECT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipe_fds[2];
  EXPECT_EQ(::pipe(pipe_fds), 0);
  const pid_t host = ::fork();
  if (host == 0) {
    ::close(pipe_fds[0]);
    ProcessPool pool({.workers = 2});
    auto pids = pool.worker_pids();
    while (pids.size() < 2) {
      (void)pool.submit(twice, 1).get();
      pids = pool.worker_pids();
    }
    pids.push_back(pool.zygote_pid());
    auto a = pool.submit(sleep_forever, 0);
    auto b = pool.submit(sleep_forever, 1);
    ::usleep(50'000);  // both tasks are running
    std::string text;
    for (int pid : pids) text += std::to_string(pid) + " ";
    text += "\n";
    [[maybe_unused]] auto written = ::write(pipe_fds[1], text.data(), text.size());
    if (drain) (void)pool.shutdown({.wait = true});
    ::pause();
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buffer[256];
  ssize_t got;
  while ((got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) {
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.find('\n') != std::string::npos) break;
  }
  ::close(pipe_fds[0]);
  std::vector<int> pids;
  std::istringstream in(text);
  for (int pid = 0; in >> pid;) pids.push_back(pid);
  EXPECT_EQ(pids.size(), 3u) << "host said: " << text;
  ::usleep(100'000);  // the shutdown, if any, is under way
  ::kill(host, SIGKILL);
  int status = 0;
  ::waitpid(host, &status, 0);
  const auto killed_at = Clock::now();
  std::set<int> left(pids.begin(), pids.end());
  while (!left.empty() && Clock::now() - killed_at < seconds(10)) {
    for (auto it = left.begin(); it != left.end();) {
      if (::waitpid(*it, &status, WNOHANG) == *it || !process_exists(*it)) {
        it = left.erase(it);
      } else {
        ++it;
      }
    }
    ::usleep(2000);
  }
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - killed_at);
  for (int pid : left) ::kill(pid, SIGKILL);
  for (int pid : pids) (void)::waitpid(pid, &status, 0);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  EXPECT_TRUE(left.empty()) << left.size() << " process(es) outlived their host by 10 s";
  return took;
}

TEST(WorkerTest, BusyWorkersEndSoonAfterTheirHostIsKilled) {
  const milliseconds took = orphans_outlive_their_host(false);
  std::printf("orphaned workers and zygote gone %lld ms after the host was killed\n",
              static_cast<long long>(took.count()));
  RecordProperty("orphans_gone_ms", static_cast<int>(took.count()));
  EXPECT_LT(took, seconds(10)) << "goal: within 1 s";
}

TEST(WorkerTest, BusyWorkersEndSoonAfterTheirHostIsKilledWhileDraining) {
  const milliseconds took = orphans_outlive_their_host(true);
  std::printf("orphaned workers and zygote gone %lld ms after the draining host was killed\n",
              static_cast<long long>(took.count()));
  RecordProperty("orphans_gone_ms", static_cast<int>(took.count()));
  EXPECT_LT(took, seconds(10)) << "goal: within 1 s";
}

}  // namespace
}  // namespace crew
