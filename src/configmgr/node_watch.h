// NodeWatcher: follows one node's label through the Kubernetes API, as an informer limited to a
// single object would: list the node (fieldSelector=metadata.name=<node>) for its labels and the
// resourceVersion, then watch from that version (a stream of JSON events, one per line), and on
// the stream's end, an error, a non-2xx status or an ERROR event (410 Gone: the version is too
// old) list and watch again, waiting with exponential backoff (100 ms doubling to 30 s by
// default) after failures.
//
// The watcher reports the label's value through a callback after every list (so that the caller
// can re-apply it: a config edited in the ConfigMap is picked up at the next list, at the latest
// when the watch is renewed), and on ADDED/MODIFIED events whose value differs from the last one
// the callback accepted. BOOKMARK events only move the resourceVersion; DELETED is logged.
//
// Thread-safety: a NodeWatcher is used by one thread; `stop` may be notified from any thread and
// ends Run promptly (the HTTP client and the backoff waits both watch it).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "configmgr/http_client.h"
#include "mps/clock.h"

namespace nvdp::configmgr {

struct WatchOptions {
  std::string api_server;  // "https://10.96.0.1:443" (no trailing slash needed)
  std::string node_name;
  std::string label_key = "nvidia.com/device-plugin.config";
  absl::Duration list_timeout = absl::Seconds(30);
  int watch_timeout_seconds = 300;  // the server ends each watch after this (timeoutSeconds)
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(30);
};

// What a list or an event says about the node.
struct NodeState {
  std::string resource_version;
  std::optional<std::string> label;  // nullopt: the label is not set
};

struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kError;
  NodeState node;       // ADDED / MODIFIED / DELETED / BOOKMARK (BOOKMARK: version only)
  std::string name;     // metadata.name of the object, when present
  int error_code = 0;   // ERROR: the Status object's code (410 for Gone)
  std::string message;  // ERROR: the Status object's message
};

// Parses a NodeList body. NotFound when it holds no node named `node_name`; InvalidArgument for
// a malformed body.
absl::StatusOr<NodeState> ParseNodeList(std::string_view body, const std::string& node_name,
                                        const std::string& label_key);
// Parses one line of a watch stream. InvalidArgument for a malformed line or unknown type.
absl::StatusOr<WatchEvent> ParseWatchEvent(std::string_view line, const std::string& label_key);

// The list and watch URLs for `options` (query values percent-encoded).
std::string ListUrl(const WatchOptions& options);
std::string WatchUrl(const WatchOptions& options, const std::string& resource_version);

class NodeWatcher {
 public:
  // Returns whether the value was handled; false makes the watcher offer the same value again at
  // the next list or event (for a transient failure to apply it).
  using LabelCallback = std::function<bool(const std::optional<std::string>&)>;

  // `http` and `clock` must outlive the watcher.
  NodeWatcher(HttpClient& http, mps::Clock& clock, WatchOptions options)
      : http_(http), clock_(clock), options_(std::move(options)) {}

  // Lists the node once. Errors: the HTTP client's, Unavailable for a non-2xx status (the
  // message has the status and body), and ParseNodeList's.
  absl::StatusOr<NodeState> List(const absl::Notification& stop);

  // Lists, retrying with backoff, at most `attempts` times; the last error when all failed
  // (Cancelled once `stop` is notified).
  absl::StatusOr<NodeState> ListWithRetry(int attempts, const absl::Notification& stop);

  // Lists and watches until `stop` is notified, calling `on_label` as described above.
  void Run(const LabelCallback& on_label, const absl::Notification& stop);

  // How many lists and watches Run has started (for tests and logs).
  int lists() const { return lists_; }
  int watches() const { return watches_; }

 private:
  // One watch from `rv`; returns whether it was healthy (2xx and delivered events or lasted a
  // while), for the backoff.
  bool WatchOnce(std::string rv, const LabelCallback& on_label, const absl::Notification& stop);
  // Calls `on_label` when `always`, or when `label` differs from the last accepted value.
  void Report(const std::optional<std::string>& label, const LabelCallback& on_label,
              bool always = false);

  HttpClient& http_;
  mps::Clock& clock_;
  const WatchOptions options_;
  bool reported_ = false;
  std::optional<std::string> last_label_;
  int lists_ = 0;
  int watches_ = 0;
};

}  // namespace nvdp::configmgr
