// Loading the configuration: file (YAML or JSON) + environment + command line,
// with upstream's precedence (flag > env > file > default), then validation of
// the result (validate.h).
//
// Every problem is reported at once, one message per problem, in the form
//   `<key path>: <value> — <what is allowed>`        e.g. `version: "v2" — must
//   be v1`
// where the key path names the flag or variable instead when the value came
// from there
// (`--mig-strategy: "foo" — ...`, `MIG_STRATEGY: "foo" — ...`). Malformed
// YAML/JSON is reported as
// `<source>:<line>:<column>: <parser message>` (1-based). Nothing throws.
//
// Pure apart from reading the one config file it is given. No threads, no
// global state; safe to call concurrently.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "config/validate.h"

namespace CLI {
class App;
}

namespace nvdp::config {

// Values given explicitly on the command line or in the environment; unset
// means "not given". Strings are raw (as typed) and are parsed/validated
// together with the file. List settings (--device-list-strategy,
// --imex-channel-ids, --cdi-feature-flags, --cdi-disable-hooks) hold their
// values comma-joined.
struct FlagOverrides {
  std::optional<std::string> mig_strategy{};
  std::optional<std::string> fail_on_init_error{};
  std::optional<std::string> mps_root{};
  std::optional<std::string> nvidia_driver_root{};  // --driver-root
  std::optional<std::string> nvidia_dev_root{};     // --dev-root
  std::optional<std::string> pass_device_specs{};
  std::optional<std::string> device_list_strategy{};
  std::optional<std::string> device_id_strategy{};
  std::optional<std::string> cdi_annotation_prefix{};
  std::optional<std::string> container_driver_root{};  // --driver-root-ctr-path
  std::optional<std::string> shared_devices_allocation_policy{};
  std::optional<std::string> kubelet_socket{};
  std::optional<std::string> config_file{};
  std::optional<std::string> nvml_library{};
  std::optional<std::string> gdrcopy_enabled{};
  std::optional<std::string> gds_enabled{};
  std::optional<std::string> mofed_enabled{};
  std::optional<std::string> nvidia_cdi_hook_path{};
  std::optional<std::string> device_discovery_strategy{};
  std::optional<std::string> imex_channel_ids{};
  std::optional<std::string> imex_required{};
  std::optional<std::string> cdi_feature_flags{};
  std::optional<std::string> cdi_disable_hooks{};

  // The flag or variable each value above was given under ("--nvidia-driver-root",
  // "CONTAINER_DRIVER_ROOT"), keyed by the setting's primary flag without "--" ("driver-root").
  // Filled by AddFlags and FlagsFromEnv so that messages name what the user wrote; a value without
  // an entry is named by the setting's primary flag or variable.
  std::map<std::string, std::string, std::less<>> given_as{};
};

// Registers upstream's flags under their primary names and aliases (--mig-strategy,
// --driver-root and --nvidia-driver-root, ...) plus ours (--nvml-library) on `app`, writing into
// `out`, which must outlive `app.parse`. Boolean flags accept `--pass-device-specs` (true) and
// `--pass-device-specs=<bool>`. A string flag may be given an empty value (`--kubelet-socket=` or
// `--kubelet-socket ""`). Repeated flags: the last one on the command line wins, whichever of a
// setting's names it uses; list flags (--device-list-strategy, --imex-channel-ids,
// --cdi-feature-flags, --cdi-disable-hooks) accumulate their comma lists instead. Does not add
// --version (each binary adds its own).
void AddFlags(CLI::App& app, FlagOverrides& out);

// Reads upstream's environment variable names (MIG_STRATEGY, FAIL_ON_INIT_ERROR, ...) plus ours
// (NVML_LIBRARY) through `getenv` (returns nullopt when unset). Empty values count as unset, except
// KUBELET_SOCKET="", which means "do not register with kubelet" as upstream. A setting with several
// variables (DRIVER_ROOT_CTR_PATH, CONTAINER_DRIVER_ROOT) takes the first one set, in upstream's
// order.
FlagOverrides FlagsFromEnv(const std::function<std::optional<std::string>(const char*)>& getenv);

struct Loaded {
  Config config;
  std::vector<std::string> warnings;  // e.g. unknown keys, with their path
};

// Everything one parse or load found. `config` is a best effort when `errors`
// is not empty (keys that could not be read keep their defaults) and must then
// not be used.
struct Report {
  Config config;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;

  bool ok() const { return errors.empty(); }
};

// Parses one config document (YAML, or JSON which YAML accepts) without
// validating it: syntax, types, required keys, unknown keys. `source` names the
// document in syntax errors. Does not apply the environment or flags and does
// not run Validate (a file may leave flags.mpsRoot to
// --mps-root, for instance).
Report ParseConfigReport(std::string_view text, std::string_view source);

// ParseConfigReport as a status: InvalidArgument whose message is every error,
// one per line.
absl::StatusOr<Loaded> ParseConfig(std::string_view text, std::string_view source);

// The whole pipeline: read the file named by --config-file / CONFIG_FILE (if
// any), apply env then flags over it, validate and normalise (CheckAndNormalize:
// the returned config is the normalised one). Errors from the file, from the
// flags and from validation together.
Report LoadConfigReport(const FlagOverrides& command_line, const FlagOverrides& env);

// LoadConfigReport as a status: InvalidArgument whose message lists every
// problem, one per line.
absl::StatusOr<Loaded> LoadConfig(const FlagOverrides& command_line, const FlagOverrides& env);

// The largest config file LoadConfig reads (a ConfigMap holds at most 1 MiB).
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;

}  // namespace nvdp::config
