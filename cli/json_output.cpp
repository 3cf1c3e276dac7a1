#include "json_output.hpp"

#include <chrono>
#include <cstddef>
#include <utility>

namespace crew::cli {
namespace {

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

nlohmann::ordered_json timing_to_json(const Timing& timing) {
  return {
      {"wall_s", seconds(timing.wall)},
      {"user_s", seconds(timing.user)},
      {"sys_s", seconds(timing.sys)},
      {"children_user_s", seconds(timing.children_user)},
      {"children_sys_s", seconds(timing.children_sys)},
      {"cpu_s", seconds(timing.cpu())},
      {"parallelism", timing.parallelism()},
      {"peak_rss_bytes", timing.peak_rss_bytes},
      {"peak_rss_is_block_peak", timing.peak_rss_is_block_peak},
  };
}

nlohmann::ordered_json process_stats_to_json(const ProcessPoolStats& stats) {
  nlohmann::ordered_json workers = nlohmann::ordered_json::array();
  for (const WorkerRecord& worker : stats.workers) {
    workers.push_back({
        {"pid", worker.pid},
        {"tasks", worker.tasks},
        {"cpu_seconds", seconds(worker.cpu)},
        {"peak_rss_kib", worker.peak_rss_kib},
        {"exit",
         worker.alive ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(worker.exit)},
    });
  }
  std::size_t items = 0;
  std::chrono::nanoseconds wall{};
  std::chrono::nanoseconds cpu{};
  for (const ChunkRecord& chunk : stats.chunks) {
    items += chunk.items;
    wall += chunk.wall;
    cpu += chunk.cpu;
  }
  return {
      {"workers", std::move(workers)},
      {"chunks",
       {
           {"count", stats.chunks.size() + stats.chunks_not_recorded},
           {"recorded", stats.chunks.size()},
           {"items", items},
           {"worker_wall_s", seconds(wall)},
           {"worker_cpu_s", seconds(cpu)},
       }},
      {"crashes", stats.crashes},
      {"timeouts", stats.timeouts},
      {"replacements", stats.replacements},
  };
}

std::string json_line(const nlohmann::ordered_json& document) {
  return document.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace crew::cli
