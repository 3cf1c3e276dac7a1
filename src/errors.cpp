#include "crew/errors.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <typeinfo>

namespace crew {
namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

}  // namespace

std::string exception_type_name(const std::exception_ptr& error) noexcept {
  if (!error) return "no exception";
  try {
    // __cxa_current_exception_type names the dynamic type even for exceptions not derived from
    // std::exception.
    try {
      std::rethrow_exception(error);
    } catch (...) {
      const std::type_info* type = abi::__cxa_current_exception_type();
      return type != nullptr ? demangle(type->name()) : std::string("unknown exception");
    }
  } catch (...) {
    return "unknown exception";
  }
}

std::string describe_exception(const std::exception_ptr& error) noexcept {
  if (!error) return "no exception";
  try {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return exception_type_name(error) + ": " + e.what();
    } catch (...) {
      return exception_type_name(error) + " (not derived from std::exception)";
    }
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace crew
