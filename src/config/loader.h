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
// together with the file.
struct FlagOverrides {
  std::optional<std::string> mig_strategy{};
  std::optional<std::string> fail_on_init_error{};
  std::optional<std::string> mps_root{};
  std::optional<std::string> nvidia_driver_root{};
  std::optional<std::string> nvidia_dev_root{};
  std::optional<std::string> pass_device_specs{};
  std::optional<std::string> device_list_strategy{};
  std::optional<std::string> device_id_strategy{};
  std::optional<std::string> cdi_annotation_prefix{};
  std::optional<std::string> container_driver_root{};
  std::optional<std::string> shared_devices_allocation_policy{};
  std::optional<std::string> kubelet_socket{};
  std::optional<std::string> config_file{};
  std::optional<std::string> nvml_library{};
};

// Registers upstream's flag names (--mig-strategy, --fail-on-init-error, ...)
// plus ours
// (--nvml-library) on `app`, writing into `out`, which must outlive
// `app.parse`. Boolean flags accept `--pass-device-specs` (true) and
// `--pass-device-specs=<bool>`; repeated flags: the last wins, except
// --device-list-strategy, whose values (comma lists) accumulate.
void AddFlags(CLI::App& app, FlagOverrides& out);

// Reads upstream's environment variable names (MIG_STRATEGY,
// FAIL_ON_INIT_ERROR, ...) plus ours (NVML_LIBRARY, ...) through `getenv`
// (returns nullopt when unset). Empty values count as unset.
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
// any), apply env then flags over it, validate. Errors from the file, from the
// flags and from validation together.
Report LoadConfigReport(const FlagOverrides& command_line, const FlagOverrides& env);

// LoadConfigReport as a status: InvalidArgument whose message lists every
// problem, one per line.
absl::StatusOr<Loaded> LoadConfig(const FlagOverrides& command_line, const FlagOverrides& env);

// The largest config file LoadConfig reads (a ConfigMap holds at most 1 MiB).
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;

}  // namespace nvdp::config
