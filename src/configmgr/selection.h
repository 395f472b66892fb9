// Which named config a node gets: the value of its label, or, when the label is unset, the
// default config and the fallback strategies (upstream's config-manager rules). Pure functions
// plus reading the names in the source directory.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nvdp::configmgr {

enum class Fallback {
  kNamed,   // the config named by --default-config, if one is named
  kSingle,  // the only config, if the source directory holds exactly one
  kEmpty,   // an empty config (the plugin's defaults)
};

// Parses "named,single" (items trimmed, empty ones dropped). InvalidArgument names an unknown
// item.
absl::StatusOr<std::vector<Fallback>> ParseFallbacks(const std::string& list);

// The config names in `srcdir`, sorted: every entry that is a regular file (following symlinks,
// as a mounted ConfigMap holds them) and does not start with '.' (a ConfigMap mount's `..data`).
// NotFound when the directory cannot be read.
absl::StatusOr<std::vector<std::string>> ListConfigs(const std::string& srcdir);

struct SelectionOptions {
  std::string default_config;  // "" when none
  std::vector<Fallback> fallbacks = {Fallback::kNamed, Fallback::kSingle};
};

// The chosen config: `name` in the source directory, or none (the empty config).
struct Selection {
  std::optional<std::string> name;
  std::string reason;  // "label", "default config", "single config", "empty fallback"
};

// Chooses the config for a node whose label is `label` (nullopt or "" when unset), given the
// names available. Errors (NotFound) name the label value or default and the available names:
// a label or default naming a missing config, or an unset label that no fallback resolves.
absl::StatusOr<Selection> SelectConfig(const std::optional<std::string>& label,
                                       const SelectionOptions& options,
                                       const std::vector<std::string>& available);

}  // namespace nvdp::configmgr
