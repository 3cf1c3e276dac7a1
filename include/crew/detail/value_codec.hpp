// Encoding and decoding of one task value (an argument, a map item, a result) with a
// crew::SerializationError that says which value failed, of what type, where, and why.
#pragma once

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "crew/detail/process_core.hpp"
#include "crew/errors.hpp"
#include "crew/serialization.hpp"

namespace crew::detail {

template <class T>
std::string value_type_name() {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(typeid(T).name());
}

// what() of the exception being handled, or a description of it.
inline std::string current_reason() {
  try {
    throw;
  } catch (const std::exception& error) {
    return error.what();
  } catch (...) {
    return describe_exception(std::current_exception());
  }
}

// "<value> (type T) could not be <verb><where>: <reason>", for the exception being handled.
template <class T>
SerializationError crossing_error(const std::string& value, const char* verb, const char* where) {
  return SerializationError(value + " (type " + value_type_name<T>() + ") could not be " + verb +
                            where + ": " + current_reason());
}

// Writes `value`; on failure drops what it wrote and throws SerializationError. `describe()`
// names the value ("argument 2 of the task"); it runs only on failure.
template <class T, class Describe>
void encode_value(ByteWriter& out, const T& value, Describe describe, const char* where) {
  const std::size_t at = out.size();
  try {
    encode(out, value);
  } catch (...) {
    out.truncate(at);
    throw crossing_error<T>(describe(), "encoded", where);
  }
}

template <class T, class Describe>
T decode_value(ByteReader& in, Describe describe, const char* where) {
  try {
    return decode<T>(in);
  } catch (...) {
    throw crossing_error<T>(describe(), "decoded", where);
  }
}

// Replaces what an entry wrote from `at` on with a kSerializationFailed reply carrying the
// message of the exception being handled. Throws: nothing.
inline void write_serialization_failure(ByteWriter& out, std::size_t at) noexcept {
  try {
    std::string message = current_reason();
    out.truncate(at);
    out.put(ReplyStatus::kSerializationFailed);
    out.put_string(message);
  } catch (...) {
    // Out of memory while describing a failure: the host reads a short reply and reports that.
  }
}

// The SerializationError a kSerializationFailed reply carries (after its status byte).
inline std::exception_ptr read_serialization_failure(ByteReader& reply) {
  return std::make_exception_ptr(SerializationError(reply.get_string()));
}

// Where a chunk or task entry was when it failed: a failure while a value crossed is a
// SerializationError of that value, one while the task ran is the task's own.
enum class EntryPhase { kDecoding, kCalling, kEncoding };

}  // namespace crew::detail
