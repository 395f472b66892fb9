// Loading the configuration: file (YAML or JSON) + environment + command line, with upstream's
// precedence (flag > env > file > default), then validation of the result.
//
// Pure apart from reading the one config file it is given. No threads; safe to call concurrently.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace CLI {
class App;
}

namespace nvdp::config {

// Values given explicitly on the command line or in the environment; unset means "not given".
// Strings are raw (as typed) and are parsed/validated together with the file.
struct FlagOverrides {
  std::optional<std::string> mig_strategy;
  std::optional<std::string> fail_on_init_error;
  std::optional<std::string> mps_root;
  std::optional<std::string> nvidia_driver_root;
  std::optional<std::string> nvidia_dev_root;
  std::optional<std::string> pass_device_specs;
  std::optional<std::string> device_list_strategy;
  std::optional<std::string> device_id_strategy;
  std::optional<std::string> cdi_annotation_prefix;
  std::optional<std::string> container_driver_root;
  std::optional<std::string> shared_devices_allocation_policy;
  std::optional<std::string> kubelet_socket;
  std::optional<std::string> config_file;
  std::optional<std::string> nvml_library;
};

// Registers upstream's flag names (--mig-strategy, --fail-on-init-error, ...) plus ours
// (--nvml-library) on `app`, writing into `out`.
void AddFlags(CLI::App& app, FlagOverrides& out);

// Reads upstream's environment variable names (MIG_STRATEGY, FAIL_ON_INIT_ERROR, ...) plus ours
// (NVML_LIBRARY) through `getenv` (returns nullopt when unset).
FlagOverrides FlagsFromEnv(const std::function<std::optional<std::string>(const char*)>& getenv);

struct Loaded {
  Config config;
  std::vector<std::string> warnings;  // e.g. unknown keys, with their path
};

// Parses one config document (YAML, or JSON which YAML accepts). `source` names it in messages.
absl::StatusOr<Loaded> ParseConfig(std::string_view text, std::string_view source);

// The whole pipeline: read the file named by the flags (if any), apply env then flags over it,
// validate. On failure the status message lists every problem, one per line.
absl::StatusOr<Loaded> LoadConfig(const FlagOverrides& command_line, const FlagOverrides& env);

// All problems with a resolved config, one message per problem (empty when valid).
std::vector<std::string> Validate(const Config& config);

}  // namespace nvdp::config
