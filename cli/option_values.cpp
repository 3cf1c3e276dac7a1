#include "option_values.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace crew::cli {
namespace {

// The bytes shown of a shortened value: room for "… (131,072 bytes)" within kMaxEchoedBytes + 20.
constexpr std::size_t kShownBytes = 60;

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// The longest prefix of `text` of at most `bytes` bytes that ends on a UTF-8 character boundary
// (invalid UTF-8 is cut anywhere: it is escaped byte by byte afterwards anyway).
std::string_view prefix_at_boundary(std::string_view text, std::size_t bytes) {
  if (text.size() <= bytes) return text;
  std::size_t end = bytes;
  for (std::size_t back = 0; back < 3 && end > 0 && is_continuation_byte(text[end]); ++back) --end;
  return text.substr(0, end);
}

std::string group_thousands(std::size_t value) {
  std::string digits = fmt::format("{}", value);
  for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<std::size_t>(i), 1, ',');
  }
  return digits;
}

// fmt's "{:?}" escapes what a terminal would act on, but also quotes the text and escapes its
// quotes and backslashes; undo those three, which are printable.
std::string escape_unprintable(std::string_view text) {
  const std::string debug = fmt::format("{:?}", text);
  std::string out;
  out.reserve(debug.size());
  for (std::size_t i = 1; i + 1 < debug.size(); ++i) {
    if (debug[i] == '\\' && (debug[i + 1] == '"' || debug[i + 1] == '\\')) ++i;
    out += debug[i];
  }
  return out;
}

}  // namespace

std::string shortened(std::string_view value) {
  if (value.size() <= kMaxEchoedBytes) return std::string(value);
  return fmt::format("{}… ({} bytes)", prefix_at_boundary(value, kShownBytes),
                     group_thousands(value.size()));
}

std::string printable_message(std::string_view message,
                              const std::vector<std::string_view>& arguments) {
  // What a parser may echo of an argument: all of it, the value of --name=value, or one item of a
  // comma-separated list (--engines, --cpu-us).
  std::vector<std::string_view> long_values;
  auto add = [&long_values](std::string_view value) {
    if (value.size() > kMaxEchoedBytes) long_values.push_back(value);
  };
  for (const std::string_view argument : arguments) {
    add(argument);
    std::string_view value = argument;
    if (const std::size_t equals = argument.find('=');
        argument.starts_with("--") && equals != std::string_view::npos) {
      value = argument.substr(equals + 1);
      add(value);
    }
    if (value.size() <= kMaxEchoedBytes || value.find(',') == std::string_view::npos) continue;
    for (std::size_t start = 0; start <= value.size();) {
      const std::size_t comma = std::min(value.find(',', start), value.size());
      add(value.substr(start, comma - start));
      start = comma + 1;
    }
  }
  // One pass over the message, however many arguments there are (a command line holds up to
  // 2 MiB of them, and CLI11 echoes every unexpected one): at each position, the long values that
  // start with the same kMaxEchoedBytes + 1 bytes, longest first, so that an argument that
  // contains another is replaced whole. It stops once the line is long enough to be cut.
  constexpr std::size_t kKey = kMaxEchoedBytes + 1;
  std::unordered_map<std::string_view, std::vector<std::string_view>> by_key;
  for (const std::string_view value : long_values) by_key[value.substr(0, kKey)].push_back(value);
  for (auto& [key, values] : by_key) {
    std::sort(values.begin(), values.end(),
              [](std::string_view a, std::string_view b) { return a.size() > b.size(); });
  }
  std::string text;
  bool cut = false;
  for (std::size_t i = 0; i < message.size();) {
    if (text.size() > kMaxMessageBytes) {
      cut = true;  // escaping never makes it shorter
      break;
    }
    std::size_t matched = 0;
    if (!by_key.empty() && message.size() - i >= kKey) {
      if (const auto found = by_key.find(message.substr(i, kKey)); found != by_key.end()) {
        for (const std::string_view value : found->second) {
          if (message.substr(i).starts_with(value)) {
            matched = value.size();
            text += shortened(value);
            break;
          }
        }
      }
    }
    if (matched == 0) {
      text += message[i];
      matched = 1;
    }
    i += matched;
  }
  text = escape_unprintable(text);
  if (cut || text.size() > kMaxMessageBytes) {
    // The size of what would have been printed, or of the message as given when it was cut early.
    text = fmt::format("{}… (a {} byte message)", prefix_at_boundary(text, kMaxMessageBytes - 40),
                       group_thousands(cut ? message.size() : text.size()));
  }
  return text;
}

std::string empty_value_after_equals(const std::vector<std::string_view>& arguments) {
  for (const std::string_view argument : arguments) {
    if (argument == "--") break;
    if (argument.size() > 3 && argument.starts_with("--") &&
        argument.find('=') == argument.size() - 1) {
      return fmt::format("{}: an empty value is not allowed",
                         argument.substr(0, argument.size() - 1));
    }
  }
  return {};
}

void refuse_empty_values(CLI::App& command) {
  for (CLI::Option* option : command.get_options()) {
    if (option->get_type_size() == 0) continue;  // a flag: it takes no value
    option->check(CLI::Validator(
        [](const std::string& value) -> std::string {
          return value.empty() ? "an empty value is not allowed" : std::string();
        },
        "", "non-empty"));
  }
}

}  // namespace crew::cli
