// Internal to src/config: the one message format shared by the loader and the
// validator,
//   `<key path>: <value> — <what is allowed>`
// e.g. `sharing.mps.resources[0].replicas: 1 — must be at least 2`, and small
// helpers to build key paths and render values. Pure functions, thread-safe.
#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <vector>

namespace nvdp::config::internal {

// The separator between the value and the explanation (an em dash between
// spaces).
inline constexpr std::string_view kDash = " \u2014 ";

// `<path>: <value> — <allowed>`.
std::string Problem(std::string_view path, std::string_view value, std::string_view allowed);

// `<path>: <note>` (used for warnings about keys, e.g. "unknown key
// (ignored)").
std::string Note(std::string_view path, std::string_view note);

// The key path a message is about (everything before the first ": ").
std::string_view PathOf(std::string_view message);

// True when `path` is `parent` or lies below it (`parent.x`, `parent[3]`).
bool IsWithin(std::string_view path, std::string_view parent);

// "a" + "b" -> "a.b" ("" + "b" -> "b"); "a" + 3 -> "a[3]".
std::string Child(std::string_view path, std::string_view key);
std::string Index(std::string_view path, size_t index);

// A string value as it appears in messages: double-quoted, with control
// characters, quotes, backslashes and non-ASCII bytes escaped, and cut after 80
// bytes ("..." marks the cut), so that every message stays on one line whatever
// the input.
std::string Quote(std::string_view text);

// `text` with control characters and non-ASCII bytes escaped (\n, \x01, ...),
// cut after 200 bytes: for text from elsewhere (parser messages, file names,
// keys) that goes into a message.
std::string Escape(std::string_view text);

// A map key as it appears in a key path: as is when it is a plain
// identifier-like word, else Quote(key).
std::string KeyText(std::string_view key);

// String helpers on std::string_view (Debian's abseil has its own string_view
// type, so absl's string functions do not take std::string_view).
namespace detail {
inline void Append(std::string& out, std::string_view piece) { out.append(piece); }
template <std::integral T>
requires(!std::same_as<T, bool> && !std::same_as<T, char>) void Append(std::string& out, T value) {
  out += std::to_string(value);
}
}  // namespace detail

// Concatenates strings and integers.
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (detail::Append(out, pieces), ...);
  return out;
}

// Splits on `sep`, keeping empty pieces.
std::vector<std::string_view> Split(std::string_view text, char sep);

// Without leading and trailing ASCII whitespace.
std::string_view Trim(std::string_view text);

// ASCII case-insensitive equality.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Text shown for a value that is absent.
inline constexpr std::string_view kMissing = "(missing)";
inline constexpr std::string_view kUnset = "(unset)";

}  // namespace nvdp::config::internal
