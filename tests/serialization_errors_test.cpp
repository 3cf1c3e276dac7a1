// crew-test-label: process
// A value that cannot cross between processes is a crew::SerializationError wherever it fails —
// an argument or item encoded in the caller, a value decoded in the worker, a result encoded in the
// worker or decoded in the caller — and the message says which value and why.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "crew/process_pool.hpp"
#include "support/leak_guard.hpp"

namespace crew {
namespace {

// Encodes unless negative; decodes unless the decoded value is 666.
struct Picky {
  int value = 0;
  template <class Archive>
  void save(Archive& archive) const {
    if (value < 0) throw std::runtime_error("negative values are not written");
    archive(value);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(value);
    if (value == 666) throw std::runtime_error("666 is not read back");
  }
};

int twice(int x) { return 2 * x; }
int value_of(int, Picky picky) { return picky.value; }
Picky make_picky(int value) { return Picky{value}; }
int picky_value(Picky picky) { return picky.value; }

template <class Fn>
std::string serialization_message(Fn&& fn) {
  try {
    fn();
  } catch (const SerializationError& error) {
    return error.what();
  } catch (const std::exception& other) {
    ADD_FAILURE() << "expected crew::SerializationError, got "
                  << describe_exception(std::current_exception());
    return {};
  }
  ADD_FAILURE() << "nothing was thrown";
  return {};
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "\"" << part << "\" not in: " << text;
}

TEST(SerializationErrorsTest, ArgumentThatFailsToEncodeThrowsFromSubmit) {
  ProcessPool pool({.workers = 1});
  const std::string what =
      serialization_message([&] { (void)pool.submit(value_of, 1, Picky{-1}); });
  expect_contains(what, "argument 2");
  expect_contains(what, "Picky");
  expect_contains(what, "could not be encoded");
  expect_contains(what, "negative values are not written");
  EXPECT_EQ(pool.submit(twice, 4).get(), 8) << "the pool stays usable";
}

TEST(SerializationErrorsTest, ArgumentThatFailsToDecodeFailsItsTask) {
  ProcessPool pool({.workers = 1});
  auto future = pool.submit(value_of, 1, Picky{666});
  const std::string what = serialization_message([&] { (void)future.get(); });
  expect_contains(what, "argument 2");
  expect_contains(what, "could not be decoded");
  expect_contains(what, "666 is not read back");
  EXPECT_EQ(pool.submit(twice, 4).get(), 8);
}

TEST(SerializationErrorsTest, ResultThatFailsToEncodeFailsItsTask) {
  ProcessPool pool({.workers = 1});
  auto future = pool.submit(make_picky, -3);
  const std::string what = serialization_message([&] { (void)future.get(); });
  expect_contains(what, "result of the task");
  expect_contains(what, "Picky");
  expect_contains(what, "could not be encoded");
  expect_contains(what, "negative values are not written");
  EXPECT_EQ(pool.submit(make_picky, 5).get().value, 5);
}

TEST(SerializationErrorsTest, ResultThatFailsToDecodeFailsItsTask) {
  ProcessPool pool({.workers = 1});
  auto future = pool.submit(make_picky, 666);
  const std::string what = serialization_message([&] { (void)future.get(); });
  expect_contains(what, "result of the task");
  expect_contains(what, "could not be decoded");
  expect_contains(what, "666 is not read back");
  EXPECT_EQ(pool.submit(make_picky, 5).get().value, 5);
}

TEST(SerializationErrorsTest, TaskThatThrowsSerializationErrorItselfIsTaskFailed) {
  ProcessPool pool({.workers = 1});
  auto future = pool.submit([] {
    throw SerializationError("my own");
    return 0;
  });
  try {
    (void)future.get();
    FAIL() << "get() did not throw";
  } catch (const TaskFailed& error) {
    EXPECT_EQ(error.type_name(), "crew::SerializationError");
    EXPECT_EQ(error.message(), "my own");
  }
}

TEST(SerializationErrorsTest, MapItemThatFailsToEncodeThrowsFromMap) {
  ProcessPool pool({.workers = 1});
  const std::vector<Picky> items = {{1}, {2}, {-1}, {4}};
  const std::string what =
      serialization_message([&] { (void)pool.map(picky_value, items, {.chunksize = 1}); });
  expect_contains(what, "item 2");
  expect_contains(what, "could not be encoded");
  expect_contains(what, "negative values are not written");
}

TEST(SerializationErrorsTest, MapOutcomesKeepEachSerializationFailure) {
  ProcessPool pool({.workers = 1});
  const std::vector<int> input = {1, 666, -3, 4};
  const auto outcomes = pool.map_outcomes(make_picky, input, {.chunksize = 4});
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(outcomes[0].value().value, 1);
  EXPECT_EQ(outcomes[3].value().value, 4);
  const std::string decode = serialization_message([&] { (void)outcomes[1].value(); });
  expect_contains(decode, "could not be decoded");
  const std::string encode = serialization_message([&] { (void)outcomes[2].value(); });
  expect_contains(encode, "could not be encoded");
}

TEST(SerializationErrorsTest, MapResultThatFailsToDecodeThrowsFromMap) {
  ProcessPool pool({.workers = 1});
  const std::vector<int> input = {1, 2, 666, 4};
  const std::string what =
      serialization_message([&] { (void)pool.map(make_picky, input, {.chunksize = 2}); });
  expect_contains(what, "result");
  expect_contains(what, "could not be decoded");
  expect_contains(what, "666 is not read back");
}

}  // namespace
}  // namespace crew
