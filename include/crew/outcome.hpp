// crew::Outcome<T>: one item's value or the error that replaced it (map_outcomes' element type).
#pragma once

#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "crew/errors.hpp"

namespace crew {

template <class T>
class Outcome {
 public:
  // Holds an error with no exception yet; only map machinery leaves it this way momentarily.
  Outcome() : state_(std::in_place_index<1>) {}
  static Outcome success(T value) { return Outcome(std::in_place_index<0>, std::move(value)); }
  static Outcome failure(std::exception_ptr error) {
    return Outcome(std::in_place_index<1>, std::move(error));
  }

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  // The value. Throws: the stored exception when this outcome is an error.
  T& value() & {
    rethrow_if_error();
    return std::get<0>(state_);
  }
  const T& value() const& {
    rethrow_if_error();
    return std::get<0>(state_);
  }
  T&& value() && {
    rethrow_if_error();
    return std::get<0>(std::move(state_));
  }

  // The stored exception, or nullptr when this outcome holds a value.
  std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(state_); }
  // describe_exception(error()), or "" for a value.
  std::string error_message() const {
    return has_value() ? std::string() : describe_exception(error());
  }

 private:
  template <std::size_t I, class... A>
  explicit Outcome(std::in_place_index_t<I> index, A&&... args)
      : state_(index, std::forward<A>(args)...) {}
  void rethrow_if_error() const {
    if (!has_value()) {
      const auto& error = std::get<1>(state_);
      if (error) std::rethrow_exception(error);
      throw Error("crew::Outcome holds neither a value nor an error");
    }
  }
  std::variant<T, std::exception_ptr> state_;
};

// For tasks returning void: success carries no value.
template <>
class Outcome<void> {
 public:
  Outcome() = default;
  static Outcome success() { return Outcome(); }
  static Outcome failure(std::exception_ptr error) {
    Outcome outcome;
    outcome.error_ = std::move(error);
    return outcome;
  }
  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }
  std::string error_message() const { return error_ ? describe_exception(error_) : std::string(); }

 private:
  std::exception_ptr error_;
};

}  // namespace crew
