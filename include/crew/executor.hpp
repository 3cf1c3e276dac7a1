// The executor interface every crew engine offers, as a concept: code written against it runs on
// ThreadPool today and on ProcessPool / MpiPool when they land.
#pragma once

#include <concepts>
#include <cstddef>
#include <vector>

#include "crew/options.hpp"

namespace crew {

template <class E>
concept Executor = requires(E& executor, const ShutdownOptions& options) {
  { executor.worker_count() } -> std::convertible_to<std::size_t>;
  { executor.shutdown(options) } -> std::same_as<ShutdownReport>;
  // Ordered map over a vector of ints, as the smallest witness of the map family.
  {
    executor.map(
        +[](int x) { return x; }, std::vector<int>{})
    } -> std::same_as<std::vector<int>>;
};

}  // namespace crew
