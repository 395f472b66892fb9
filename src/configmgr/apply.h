// Applying a node's config: choose the named config (selection.h), and when its content differs
// from the destination file the plugin reads, replace the destination atomically and signal the
// plugin to reload.
//
// Thread-safety: a ConfigApplier is not thread-safe (one caller at a time); it keeps no state
// between calls beyond its options.
#pragma once

#include <signal.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configmgr/selection.h"
#include "configmgr/signaler.h"

namespace nvdp::configmgr {

// Replaces `path` with `content` atomically: a temp file in the same directory (created if
// missing), written, synced, mode 0644, then renamed over `path`. Readers see the old or the new
// content, never a mix. Errors name the path.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

struct ApplyOptions {
  std::string srcdir;  // one file per config name
  std::string dst;     // the file the plugin reads
  SelectionOptions selection;
  bool send_signal = true;
  int signal = SIGHUP;
  std::string process_to_signal = "nvidia-device-plugin";
};

struct ApplyResult {
  Selection selection;
  bool written = false;        // false: the destination already had this content
  int signalled = 0;           // processes signalled (when written and sending signals)
  absl::Status signal_status;  // why signalling failed (the config was written regardless)
};

class ConfigApplier {
 public:
  // `signaler` is used only with options.send_signal and must then outlive the applier.
  ConfigApplier(ApplyOptions options, ProcessSignaler* signaler)
      : options_(std::move(options)), signaler_(signaler) {}

  // Applies the config for a node labelled `label` (nullopt: unset). Errors, with the
  // destination left as it was and nothing signalled: the selection failed (a label or default
  // naming a missing config: the message names it and the available ones), the source could not
  // be read or the destination written.
  absl::StatusOr<ApplyResult> Apply(const std::optional<std::string>& label);

  const ApplyOptions& options() const { return options_; }

 private:
  ApplyOptions options_;
  ProcessSignaler* signaler_;
};

}  // namespace nvdp::configmgr
