// What a ProcessPool measured: per chunk (worker pid, wall and CPU time) and per worker (tasks,
// CPU, peak RSS). Nothing is recorded per item: it would cost more than the item.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace crew {

// One task or map chunk as the worker saw it.
struct ChunkRecord {
  pid_t pid = 0;
  std::size_t items = 0;
  std::chrono::nanoseconds wall{};  // inside the worker, from the request read to the reply
  std::chrono::nanoseconds cpu{};   // the worker's CPU time (user + sys) spent on it
};

// One worker process, alive or gone.
struct WorkerRecord {
  pid_t pid = 0;
  std::size_t tasks = 0;           // tasks and chunks it replied to
  std::chrono::nanoseconds cpu{};  // CPU of those tasks (while alive); user + sys once reaped
  // Peak resident set in KiB: the largest ru_maxrss it reported while alive, or wait4's figure
  // once reaped.
  long peak_rss_kib = 0;
  bool alive = true;
  // How it ended, once it has: "exited 0", "killed by SIGKILL", "timed out", "retired after 5
  // tasks", …
  std::string exit;
};

struct ProcessPoolStats {
  std::vector<WorkerRecord> workers;  // every worker the pool started, in start order
  // The first kMaxChunkRecords tasks/chunks; later ones are counted in chunks_not_recorded.
  std::vector<ChunkRecord> chunks;
  std::size_t chunks_not_recorded = 0;
  std::size_t crashes = 0;       // workers that died while the pool wanted them
  std::size_t timeouts = 0;      // tasks stopped for running past task_timeout
  std::size_t replacements = 0;  // workers started to replace one that ended
  static constexpr std::size_t kMaxChunkRecords = 100'000;
};

}  // namespace crew
