// `crew bench --compare-python`: the article's own Python on the same job in the same run.
#pragma once

#include <crew/sweep.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crew::cli {

// The Python interpreter --compare-python runs: $CREW_PYTHON, or python3.
[[nodiscard]] std::string python_program();

// Where `name` is: itself when it holds a '/' and is executable, else the first executable
// PATH entry of that name (as posix_spawnp searches); nullopt when there is none. Throws: nothing
// but std::bad_alloc.
[[nodiscard]] std::optional<std::string> find_program(const std::string& name);

// Runs bench/python/article_primes.py (primes below `below`, `cores` workers) and appends its
// loop, ThreadPoolExecutor and multiprocessing.Pool walls to s.python beside crew's points.
// Throws: std::runtime_error when Python fails (with its stderr).
void compare_python_cpu(std::int64_t below, std::size_t cores, sweep::Sweep& s);

// Runs bench/python/article_fetch.py on `urls` (its loop and ThreadPoolExecutor(4)) and appends
// them to s.python. Throws: std::runtime_error when Python fails.
void compare_python_io(const std::vector<std::string>& urls, sweep::Sweep& s);

}  // namespace crew::cli
