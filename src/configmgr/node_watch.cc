#include "configmgr/node_watch.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace nvdp::configmgr {
namespace {

using nlohmann::json;

std::string PercentEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string Base(const WatchOptions& options) {
  std::string base = options.api_server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return absl::StrCat(
      base, "/api/v1/nodes?fieldSelector=", PercentEncode("metadata.name=" + options.node_name));
}

// obj[key] when obj is an object holding a string there.
std::optional<std::string> StringAt(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

const json* ObjectAt(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? &*it : nullptr;
}

NodeState NodeFrom(const json& node, const std::string& label_key) {
  NodeState state;
  if (const json* meta = ObjectAt(node, "metadata")) {
    state.resource_version = StringAt(*meta, "resourceVersion").value_or("");
    if (const json* labels = ObjectAt(*meta, "labels"))
      state.label = StringAt(*labels, label_key.c_str());
  }
  return state;
}

std::string Shorten(std::string_view text) {
  constexpr size_t kMax = 512;
  return text.size() <= kMax ? std::string(text)
                             : absl::StrCat(std::string(text.substr(0, kMax)), "...");
}

}  // namespace

std::string ListUrl(const WatchOptions& options) { return Base(options); }

std::string WatchUrl(const WatchOptions& options, const std::string& resource_version) {
  return absl::StrCat(Base(options),
                      "&watch=true&resourceVersion=", PercentEncode(resource_version),
                      "&allowWatchBookmarks=true&timeoutSeconds=", options.watch_timeout_seconds);
}

absl::StatusOr<NodeState> ParseNodeList(std::string_view body, const std::string& node_name,
                                        const std::string& label_key) {
  const json list = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (list.is_discarded() || !list.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("node list is not a JSON object: ", Shorten(body)));
  }
  auto items = list.find("items");
  if (items != list.end() && items->is_array()) {
    for (const json& item : *items) {
      const json* meta = ObjectAt(item, "metadata");
      if (meta == nullptr || StringAt(*meta, "name") != node_name) continue;
      NodeState state = NodeFrom(item, label_key);
      // The list's own version is the one to watch from; the node's is the fallback.
      if (const json* list_meta = ObjectAt(list, "metadata")) {
        if (auto rv = StringAt(*list_meta, "resourceVersion"); rv.has_value() && !rv->empty()) {
          state.resource_version = *rv;
        }
      }
      return state;
    }
  }
  return absl::NotFoundError(absl::StrCat("node \"", node_name, "\" not found"));
}

absl::StatusOr<WatchEvent> ParseWatchEvent(std::string_view line, const std::string& label_key) {
  const json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("watch event is not a JSON object: ", Shorten(line)));
  }
  const std::optional<std::string> type = StringAt(event, "type");
  const json* object = ObjectAt(event, "object");
  if (!type.has_value() || object == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("watch event without type or object: ", Shorten(line)));
  }
  WatchEvent out;
  if (*type == "ADDED") {
    out.type = WatchEvent::Type::kAdded;
  } else if (*type == "MODIFIED") {
    out.type = WatchEvent::Type::kModified;
  } else if (*type == "DELETED") {
    out.type = WatchEvent::Type::kDeleted;
  } else if (*type == "BOOKMARK") {
    out.type = WatchEvent::Type::kBookmark;
  } else if (*type == "ERROR") {
    out.type = WatchEvent::Type::kError;
    auto code = object->find("code");
    if (code != object->end() && code->is_number_integer()) out.error_code = code->get<int>();
    out.message = StringAt(*object, "message").value_or("");
    return out;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown watch event type \"", *type, "\""));
  }
  out.node = NodeFrom(*object, label_key);
  if (const json* meta = ObjectAt(*object, "metadata"))
    out.name = StringAt(*meta, "name").value_or("");
  return out;
}

absl::StatusOr<NodeState> NodeWatcher::List(const absl::Notification& stop) {
  auto response = http_.Get(ListUrl(options_), options_.list_timeout, stop);
  if (!response.ok()) return response.status();
  if (response->status < 200 || response->status >= 300) {
    return absl::UnavailableError(absl::StrCat("listing node ", options_.node_name, ": HTTP ",
                                               response->status, ": ", Shorten(response->body)));
  }
  return ParseNodeList(response->body, options_.node_name, options_.label_key);
}

absl::StatusOr<NodeState> NodeWatcher::ListWithRetry(int attempts, const absl::Notification& stop) {
  absl::Duration backoff = options_.initial_backoff;
  absl::Status last = absl::CancelledError("stopped");
  for (int i = 0; i < attempts && !stop.HasBeenNotified(); ++i) {
    if (i > 0) {
      if (!clock_.SleepUntil(clock_.Now() + backoff, &stop)) break;
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    auto node = List(stop);
    if (node.ok()) return node;
    last = node.status();
    spdlog::warn("listing node {} (attempt {} of {}): {}", options_.node_name, i + 1, attempts,
                 std::string(last.message()));
  }
  return last;
}

void NodeWatcher::Report(const std::optional<std::string>& label, const LabelCallback& on_label,
                         bool always) {
  if (!always && reported_ && last_label_ == label) return;
  if (on_label(label)) {
    reported_ = true;
    last_label_ = label;
  }
}

bool NodeWatcher::WatchOnce(std::string rv, const LabelCallback& on_label,
                            const absl::Notification& stop) {
  ++watches_;
  int events = 0;
  bool expired = false;
  const absl::Time started = clock_.Now();
  auto on_line = [&](std::string_view line) {
    if (line.empty() || line == "\r") return;
    auto event = ParseWatchEvent(line, options_.label_key);
    if (!event.ok()) {
      spdlog::warn("watch of node {}: {}", options_.node_name,
                   std::string(event.status().message()));
      return;
    }
    ++events;
    switch (event->type) {
      case WatchEvent::Type::kAdded:
      case WatchEvent::Type::kModified:
        if (!event->name.empty() && event->name != options_.node_name) return;
        if (!event->node.resource_version.empty()) rv = event->node.resource_version;
        Report(event->node.label, on_label);
        return;
      case WatchEvent::Type::kBookmark:
        if (!event->node.resource_version.empty()) rv = event->node.resource_version;
        return;
      case WatchEvent::Type::kDeleted:
        spdlog::warn("node {} was deleted; keeping the current config", options_.node_name);
        return;
      case WatchEvent::Type::kError:
        if (event->error_code == 410) {
          expired = true;
          spdlog::info("watch of node {}: resource version {} expired; listing again",
                       options_.node_name, rv);
        } else {
          spdlog::warn("watch of node {}: error event {}: {}", options_.node_name,
                       event->error_code, event->message);
        }
        return;
    }
  };
  auto end = http_.Stream(WatchUrl(options_, rv), on_line,
                          absl::Seconds(options_.watch_timeout_seconds + 30), stop);
  if (stop.HasBeenNotified()) return true;
  if (!end.ok()) {
    spdlog::warn("watch of node {}: {}", options_.node_name, std::string(end.status().message()));
    return false;
  }
  if (end->status < 200 || end->status >= 300) {
    if (end->status == 410) {
      spdlog::info("watch of node {}: HTTP 410 Gone; listing again", options_.node_name);
      return true;
    }
    spdlog::warn("watch of node {}: HTTP {}: {}", options_.node_name, end->status,
                 Shorten(end->error));
    return false;
  }
  if (!expired) spdlog::debug("watch of node {} ended; listing again", options_.node_name);
  return events > 0 || clock_.Now() - started >= absl::Seconds(1);
}

void NodeWatcher::Run(const LabelCallback& on_label, const absl::Notification& stop) {
  absl::Duration backoff = options_.initial_backoff;  // the wait after the next failure
  absl::Duration delay = absl::ZeroDuration();        // the wait before the next list
  auto failed = [&] {
    delay = backoff;
    backoff = std::min(backoff * 2, options_.max_backoff);
  };
  while (!stop.HasBeenNotified()) {
    if (delay > absl::ZeroDuration() && !clock_.SleepUntil(clock_.Now() + delay, &stop)) break;
    ++lists_;
    auto node = List(stop);
    if (stop.HasBeenNotified()) break;
    if (!node.ok()) {
      failed();
      spdlog::warn("{}; retrying in {}", std::string(node.status().message()),
                   absl::FormatDuration(delay));
      continue;
    }
    Report(node->label, on_label, /*always=*/true);
    if (WatchOnce(node->resource_version, on_label, stop)) {
      backoff = options_.initial_backoff;
      delay = options_.initial_backoff;
    } else {
      failed();
    }
  }
}

}  // namespace nvdp::configmgr
