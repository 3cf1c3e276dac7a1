// Demonstrates that an installed crew (ThreadPool, ProcessPool, the fetch workload) is usable
// through find_package(crew) alone.
#include <crew/crew.hpp>
#include <crew/version.hpp>

#include <cstdio>
#include <vector>

int main() {
  crew::ThreadPool pool({.workers = 2});
  auto v = pool.map([](int x) { return x * 2; }, std::vector<int>{1, 2, 3});
  if (v != std::vector<int>{2, 4, 6}) {
    std::fprintf(stderr, "install_consumer: pool.map returned the wrong values\n");
    return 1;
  }
  // ProcessPool pulls in cereal through the installed package's find_dependency.
  crew::ProcessPool processes({.workers = 1});
  if (processes
          .submit(
              +[](int x) { return x + 1; }, 41)
          .get() != 42) {
    std::fprintf(stderr, "install_consumer: ProcessPool::submit returned the wrong value\n");
    return 1;
  }
  // The fetch workload links libcurl through the installed package's find_dependency(CURL).
  if (crew::workloads::check_fetch_url("http://127.0.0.1/").size() != 0 ||
      crew::workloads::check_fetch_url("file:///etc/passwd").empty()) {
    std::fprintf(stderr, "install_consumer: check_fetch_url judged wrongly\n");
    return 1;
  }
  std::printf("crew %s: install consumer ok\n", CREW_VERSION_STRING);
  return 0;
}
