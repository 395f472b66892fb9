#include "config/messages.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace nvdp::config::internal {

std::string Problem(std::string_view path, std::string_view value, std::string_view allowed) {
  return Cat(path, ": ", value, kDash, allowed);
}

std::string Note(std::string_view path, std::string_view note) { return Cat(path, ": ", note); }

std::string_view PathOf(std::string_view message) {
  const size_t pos = message.find(": ");
  return pos == std::string_view::npos ? message : message.substr(0, pos);
}

bool IsWithin(std::string_view path, std::string_view parent) {
  if (!path.starts_with(parent)) return false;
  if (path.size() == parent.size()) return true;
  const char next = path[parent.size()];
  return next == '.' || next == '[';
}

std::string Child(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : Cat(path, ".", key);
}

std::string Index(std::string_view path, size_t index) { return Cat(path, "[", index, "]"); }

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const size_t pos = text.find(sep);
    out.push_back(text.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    text.remove_prefix(pos + 1);
  }
}

std::string_view Trim(std::string_view text) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

namespace {

void AppendEscaped(std::string& out, std::string_view text, bool quoting) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (quoting && (c == '"' || c == '\\')) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x20 || byte >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", byte);
      out += hex;
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string Quote(std::string_view text) {
  constexpr size_t kMaxBytes = 80;
  std::string out = "\"";
  AppendEscaped(out, text.substr(0, kMaxBytes), /*quoting=*/true);
  if (text.size() > kMaxBytes) out += "...";
  out += "\"";
  return out;
}

std::string Escape(std::string_view text) {
  constexpr size_t kMaxBytes = 200;
  std::string out;
  AppendEscaped(out, text.substr(0, kMaxBytes), /*quoting=*/false);
  if (text.size() > kMaxBytes) out += "...";
  return out;
}

std::string KeyText(std::string_view key) {
  const bool plain =
      !key.empty() && key.size() <= 80 && std::all_of(key.begin(), key.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '/';
      });
  return plain ? std::string(key) : Quote(key);
}

}  // namespace nvdp::config::internal
