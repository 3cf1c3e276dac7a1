// `crew bench --compare-python`: the article's own Python (bench/python/) run on the same job in
// the same run, and its walls set beside crew's; and finding a program on PATH before a sweep.
#include "bench_python.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace crew::cli {
namespace {

// The article's ThreadPoolExecutor(4), for --compare-python on the IO job.
constexpr std::size_t kPythonIoWorkers = 4;

std::string python_dir() {
  if (const char* dir = std::getenv("CREW_PYTHON_DIR"); dir != nullptr && *dir != '\0') return dir;
  return CREW_PYTHON_DIR;
}

// Runs python3 with `args`, returns its stdout. Throws: std::runtime_error with its stderr.
std::string run_python(const std::vector<std::string>& args) {
  const std::string python = python_program();
  std::vector<std::string> argv_text = {python};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // Loopback URLs must not go through a proxy from the environment.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
  env_text.emplace_back("no_proxy=127.0.0.1,localhost,::1");
  env_text.emplace_back("NO_PROXY=127.0.0.1,localhost,::1");
  std::vector<char*> envp;
  for (std::string& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(out[1]);
  ::close(err[1]);
  if (spawned != 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error(fmt::format("cannot run {}: {}", python, std::strerror(spawned)));
  }
  // Python prints one short line on stdout; stderr only on failure. Read stdout, then stderr.
  auto read_all = [](int fd) {
    std::string text;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
  };
  const std::string text = read_all(out[0]);
  const std::string errors = read_all(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(fmt::format("the article's Python failed: {}", errors));
  }
  return text;
}

const sweep::Point* find_point(const sweep::Sweep& s, std::string_view engine, std::size_t w) {
  if (engine == "serial") return &s.serial;
  for (const sweep::Point& point : s.points) {
    if (point.engine == engine && point.workers == w) return &point;
  }
  return nullptr;
}

sweep::PythonComparison comparison(const sweep::Sweep& s, std::string what, std::size_t workers,
                                   double wall_s, std::string engine) {
  const sweep::Point* point = find_point(s, engine, workers);
  const std::size_t crew_workers = engine == "serial" ? 1 : workers;
  return {.what = std::move(what),
          .workers = workers,
          .wall_s = wall_s,
          .crew_engine = std::move(engine),
          .crew_workers = crew_workers,
          .crew_wall_s = point != nullptr ? point->wall_s : 0};
}

}  // namespace

std::string python_program() {
  const char* python_env = std::getenv("CREW_PYTHON");
  return python_env != nullptr && *python_env != '\0' ? python_env : "python3";
}

std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
  while (true) {
    const std::size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    // An empty entry is the current directory, as for execvp.
    const std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return std::nullopt;
    dirs.remove_prefix(colon + 1);
  }
}

void compare_python_cpu(std::int64_t below, std::size_t cores, sweep::Sweep& s) {
  const std::string out = run_python(
      {python_dir() + "/article_primes.py", std::to_string(below), std::to_string(cores)});
  const auto result = nlohmann::json::parse(out);
  const std::size_t w = cores;
  s.python.push_back(
      comparison(s, "Python for loop", 1, result.at("serial_s").get<double>(), "serial"));
  s.python.push_back(comparison(s, fmt::format("ThreadPoolExecutor({})", w), w,
                                result.at("threads_s").get<double>(), "thread"));
  s.python.push_back(comparison(s, fmt::format("multiprocessing.Pool({})", w), w,
                                result.at("pool_s").get<double>(), "process"));
}

void compare_python_io(const std::vector<std::string>& urls, sweep::Sweep& s) {
  char path[] = "/tmp/crew-bench-urls-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("cannot write a temporary URL list");
  ::close(fd);
  {
    std::ofstream file(path);
    for (const std::string& url : urls) file << url << '\n';
  }
  std::string out;
  try {
    out = run_python({python_dir() + "/article_fetch.py", path, std::to_string(kPythonIoWorkers)});
  } catch (...) {
    ::unlink(path);
    throw;
  }
  ::unlink(path);
  const auto result = nlohmann::json::parse(out);
  s.python.push_back(
      comparison(s, "Python urlopen loop", 1, result.at("serial_s").get<double>(), "serial"));
  s.python.push_back(comparison(s, fmt::format("ThreadPoolExecutor({})", kPythonIoWorkers),
                                kPythonIoWorkers, result.at("threads_s").get<double>(), "thread"));
}

}  // namespace crew::cli
