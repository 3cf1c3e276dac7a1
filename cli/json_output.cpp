#include "json_output.hpp"

#include <chrono>

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

std::string json_line(const nlohmann::ordered_json& document) {
  return document.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace crew::cli
