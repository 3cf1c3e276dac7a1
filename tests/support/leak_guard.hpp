// A GoogleTest listener that fails any test leaving a thread or a child process behind.
// Include this header in a test file: the inline variable below installs the guard once.
#pragma once

#include <cstddef>

namespace crew::testing {

// Threads of this process now (/proc/self/task).
std::size_t count_threads();
// Child processes of this process now, zombies included (/proc/self/task/*/children).
std::size_t count_children();
// Blocks up to ~2 s for the thread count to drop to `expected` (a joined std::thread may take a
// moment to vanish from /proc). Returns the last count seen.
std::size_t settle_thread_count(std::size_t expected);

bool install_leak_guard();
inline const bool kLeakGuardInstalled = install_leak_guard();

}  // namespace crew::testing
