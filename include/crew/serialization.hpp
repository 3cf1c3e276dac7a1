// What may cross to a worker process, and how it is encoded.
//
// Arguments, map items and results travel between processes as bytes. Three kinds of type cross:
//  * raw types — arithmetic types, enums, and trivially copyable aggregates of raw types (up to
//    kMaxAggregateFields fields, nested aggregates allowed): copied byte for byte, the fast path;
//  * anything cereal can write with its binary archive: std::string, the standard containers,
//    std::pair / std::tuple / std::optional / std::variant, and every type with a cereal
//    `serialize(Archive&)` member or free function;
//  * nothing else. Pointers, references, std::string_view, std::span, and any type holding one of
//    them (as a template argument or an aggregate field) are refused at compile time: in another
//    process they would point nowhere.
#pragma once

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <istream>
#include <new>
#include <ostream>
#include <span>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "crew/errors.hpp"

namespace crew {

namespace detail {

// ---------------------------------------------------------------------------------------------
// Byte buffers.

// An append-only byte buffer. Grows geometrically; reserve() when the size is known.
class ByteWriter {
 public:
  void append(const void* data, std::size_t size) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + size);
    if (size != 0) std::memcpy(bytes_.data() + at, data, size);
  }
  // Makes room for `size` bytes at the end and returns where they start.
  char* extend(std::size_t size) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + size);
    return bytes_.data() + at;
  }
  template <class T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    append(&value, sizeof(T));
  }
  void put_string(std::string_view text) {
    put<std::uint64_t>(text.size());
    append(text.data(), text.size());
  }
  void reserve(std::size_t size) { bytes_.reserve(size); }
  void clear() noexcept { bytes_.clear(); }
  void truncate(std::size_t size) { bytes_.resize(size); }
  std::size_t size() const noexcept { return bytes_.size(); }
  std::string& bytes() noexcept { return bytes_; }

 private:
  std::string bytes_;  // std::string: resize() without zeroing cost is not available for vector
};

// Reads what a ByteWriter wrote. Throws crew::SerializationError on a short buffer.
class ByteReader {
 public:
  ByteReader(const char* data, std::size_t size) : at_(data), end_(data + size) {}
  explicit ByteReader(std::string_view bytes) : ByteReader(bytes.data(), bytes.size()) {}

  const char* take(std::size_t size) {
    if (static_cast<std::size_t>(end_ - at_) < size) {
      throw SerializationError("crew: message ended early (wanted " + std::to_string(size) +
                               " more bytes, " + std::to_string(end_ - at_) + " left)");
    }
    const char* here = at_;
    at_ += size;
    return here;
  }
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  std::string get_string() {
    const auto size = get<std::uint64_t>();
    const char* data = take(size);
    return std::string(data, size);
  }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - at_); }
  const char* position() const noexcept { return at_; }

 private:
  const char* at_;
  const char* end_;
};

// std::streambuf views over ByteWriter / ByteReader, for cereal's archives.
class WriterStreamBuf final : public std::streambuf {
 public:
  explicit WriterStreamBuf(ByteWriter& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* data, std::streamsize size) override {
    out_.append(data, static_cast<std::size_t>(size));
    return size;
  }
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    const char c = traits_type::to_char_type(ch);
    out_.append(&c, 1);
    return ch;
  }

 private:
  ByteWriter& out_;
};

class ReaderStreamBuf final : public std::streambuf {
 public:
  explicit ReaderStreamBuf(ByteReader& in) : in_(in) {}

 protected:
  std::streamsize xsgetn(char* data, std::streamsize size) override {
    const auto n = std::min<std::size_t>(static_cast<std::size_t>(size), in_.remaining());
    std::memcpy(data, in_.take(n), n);
    return static_cast<std::streamsize>(n);
  }
  int_type underflow() override { return traits_type::eof(); }

 private:
  ByteReader& in_;
};

// ---------------------------------------------------------------------------------------------
// Aggregate fields, without reflection: count them by brace-initialising from "anything", then
// name them with a structured binding.

inline constexpr std::size_t kMaxAggregateFields = 8;

struct AnyField {
  template <class T>
  operator T() const noexcept;  // declared only: used in unevaluated contexts
};
template <std::size_t>
using AnyFieldAt = AnyField;

template <class T, std::size_t... I>
constexpr bool brace_constructible_from(std::index_sequence<I...>) {
  return requires { T{AnyFieldAt<I>{}...}; };
}

// Number of fields of aggregate T (0 when it has more than kMaxAggregateFields).
template <class T>
constexpr std::size_t aggregate_field_count() {
  std::size_t count = 0;
  [&]<std::size_t... N>(std::index_sequence<N...>) {
    ((brace_constructible_from<T>(std::make_index_sequence<N>()) ? (count = N) : count), ...);
  }
  (std::make_index_sequence<kMaxAggregateFields + 2>());
  return count > kMaxAggregateFields ? 0 : count;
}

template <class... T>
struct TypeList {};

template <class T>
auto aggregate_field_types(T& t) {
  constexpr std::size_t n = aggregate_field_count<T>();
  if constexpr (n == 1) {
    auto& [a] = t;
    return TypeList<decltype(a)>{};
  } else if constexpr (n == 2) {
    auto& [a, b] = t;
    return TypeList<decltype(a), decltype(b)>{};
  } else if constexpr (n == 3) {
    auto& [a, b, c] = t;
    return TypeList<decltype(a), decltype(b), decltype(c)>{};
  } else if constexpr (n == 4) {
    auto& [a, b, c, d] = t;
    return TypeList<decltype(a), decltype(b), decltype(c), decltype(d)>{};
  } else if constexpr (n == 5) {
    auto& [a, b, c, d, e] = t;
    return TypeList<decltype(a), decltype(b), decltype(c), decltype(d), decltype(e)>{};
  } else if constexpr (n == 6) {
    auto& [a, b, c, d, e, f] = t;
    return TypeList<decltype(a), decltype(b), decltype(c), decltype(d), decltype(e), decltype(f)>{};
  } else if constexpr (n == 7) {
    auto& [a, b, c, d, e, f, g] = t;
    return TypeList<decltype(a), decltype(b), decltype(c), decltype(d), decltype(e), decltype(f),
                    decltype(g)>{};
  } else if constexpr (n == 8) {
    auto& [a, b, c, d, e, f, g, h] = t;
    return TypeList<decltype(a), decltype(b), decltype(c), decltype(d), decltype(e), decltype(f),
                    decltype(g), decltype(h)>{};
  } else {
    return TypeList<>{};
  }
}

// A plain struct we can look into: an aggregate that is not an array and not a union.
template <class T>
concept InspectableAggregate =
    std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_empty_v<T> &&
    !std::is_polymorphic_v<T> && aggregate_field_count<T>() > 0;

template <class T>
using FieldTypes = decltype(aggregate_field_types(std::declval<T&>()));

// ---------------------------------------------------------------------------------------------
// Refused types: pointers, references, views, and whatever holds them.

template <class T>
struct Refused;

template <class List>
struct AnyRefused;
template <class... T>
struct AnyRefused<TypeList<T...>>
    : std::bool_constant<(Refused<std::remove_cv_t<T>>::value || ...)> {};

template <class T>
struct RefusedByTemplateArgs : std::false_type {};
template <template <class...> class C, class... A>
struct RefusedByTemplateArgs<C<A...>> : AnyRefused<TypeList<A...>> {};

template <class T>
constexpr bool refused_aggregate() {
  if constexpr (InspectableAggregate<T>) {
    return AnyRefused<FieldTypes<T>>::value;
  } else {
    return false;
  }
}

template <class T>
struct IsSpan : std::false_type {};
template <class T, std::size_t N>
struct IsSpan<std::span<T, N>> : std::true_type {};
template <class T>
struct IsStdArray : std::false_type {};
template <class T, std::size_t N>
struct IsStdArray<std::array<T, N>> : std::true_type {};

template <class T>
struct Refused
    : std::bool_constant<std::is_pointer_v<T> || std::is_reference_v<T> ||
                         std::is_member_pointer_v<T> || std::is_same_v<T, std::nullptr_t> ||
                         IsSpan<T>::value || std::is_same_v<T, std::string_view> ||
                         RefusedByTemplateArgs<T>::value || refused_aggregate<T>()> {};
template <class T, std::size_t N>
struct Refused<std::array<T, N>> : Refused<std::remove_cv_t<T>> {};
template <class T, std::size_t N>
struct Refused<T[N]> : Refused<std::remove_cv_t<T>> {};

// ---------------------------------------------------------------------------------------------
// Raw (byte-copyable) types.

template <class T>
constexpr bool raw_type();

template <class List>
struct AllRaw;
template <class... T>
struct AllRaw<TypeList<T...>>
    : std::bool_constant<(raw_type<std::remove_cv_t<std::remove_reference_t<T>>>() && ...)> {};

template <class T>
constexpr bool raw_type() {
  if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return true;
  } else if constexpr (std::is_trivially_copyable_v<T> && InspectableAggregate<T>) {
    // A type that says how cereal should write it is written that way, never copied raw.
    return !cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
           AllRaw<FieldTypes<T>>::value;
  } else {
    return false;
  }
}

template <class T>
inline constexpr bool kRaw = raw_type<T>();

template <class T>
inline constexpr bool kCerealWritable =
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value&&
        cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value;

}  // namespace detail

// True when T may be an argument, a map item or a result of a ProcessPool task.
template <class T>
inline constexpr bool kCrossesProcesses =
    !detail::Refused<std::remove_cv_t<T>>::value &&
    (detail::kRaw<std::remove_cv_t<T>> || detail::kCerealWritable<std::remove_cv_t<T>>);

namespace detail {

// Fails compilation with a readable message when T cannot cross to a worker process.
template <class T>
constexpr void check_crossable() {
  using U = std::remove_cv_t<T>;
  static_assert(!std::is_pointer_v<U> && !std::is_member_pointer_v<U>,
                "crew::ProcessPool: a pointer cannot cross to a worker process (it would point "
                "into another address space): pass the value it points to");
  static_assert(!std::is_same_v<U, std::string_view> && !IsSpan<U>::value,
                "crew::ProcessPool: std::string_view and std::span are views into this process's "
                "memory and cannot cross to a worker: pass a std::string or a std::vector");
  static_assert(!Refused<U>::value,
                "crew::ProcessPool: this type holds a pointer, a reference or a view (string_view, "
                "span), which would point nowhere in a worker process: hold values instead");
  static_assert(Refused<U>::value || kRaw<U> || kCerealWritable<U>,
                "crew::ProcessPool: this type cannot cross to a worker process: use arithmetic "
                "types, enums, std::string, standard containers, aggregates of arithmetic types, "
                "or give the type a cereal serialize(Archive&) function");
}

// Writes one value.
template <class T>
void encode(ByteWriter& out, const T& value) {
  if constexpr (kRaw<T>) {
    out.put(value);
  } else {
    WriterStreamBuf buf(out);
    std::ostream stream(&buf);
    cereal::BinaryOutputArchive archive(stream);
    archive(value);
  }
}

// Reads one value. Throws crew::SerializationError when the bytes do not hold a T.
template <class T>
T decode(ByteReader& in) {
  if constexpr (kRaw<T>) {
    return in.get<T>();
  } else {
    static_assert(std::is_default_constructible_v<T>,
                  "crew::ProcessPool: a type cereal reads back must be default-constructible");
    T value{};
    try {
      ReaderStreamBuf buf(in);
      std::istream stream(&buf);
      cereal::BinaryInputArchive archive(stream);
      archive(value);
    } catch (const cereal::Exception& error) {
      throw SerializationError(std::string("crew: cannot decode a value: ") + error.what());
    } catch (const std::length_error& error) {
      // A length read from the bytes beyond what a container can hold: corrupt or mismatched.
      throw SerializationError(std::string("crew: cannot decode a value: ") + error.what());
    } catch (const std::bad_alloc&) {
      throw SerializationError(
          "crew: cannot decode a value: a length in its bytes is larger than memory allows");
    }
    return value;
  }
}

// Writes a run of values: raw ones as one block, others through one cereal archive.
template <class T, class Range>
void encode_many(ByteWriter& out, const Range& values, std::size_t count) {
  out.put<std::uint64_t>(count);
  if constexpr (kRaw<T>) {
    char* at = out.extend(count * sizeof(T));
    for (const auto& value : values) {
      const T copy = value;
      std::memcpy(at, &copy, sizeof(T));
      at += sizeof(T);
    }
  } else {
    WriterStreamBuf buf(out);
    std::ostream stream(&buf);
    cereal::BinaryOutputArchive archive(stream);
    for (const auto& value : values) archive(static_cast<const T&>(value));
  }
}

}  // namespace detail
}  // namespace crew
