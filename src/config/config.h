// The plugin's configuration: the upstream `version: v1` schema plus our sharing keys, as plain
// structs whose member initialisers are the documented defaults (docs/configuration.md).
//
// Pure data: loading (loader.h) and validation (validate.h) produce and check it; the rest of the
// daemon only reads it. Copyable, no locking needed.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nvdp::config {

enum class MigStrategy { kNone, kSingle, kMixed };
enum class DeviceListStrategy { kEnvvar, kVolumeMounts, kCdiAnnotations, kCdiCri };
enum class DeviceIdStrategy { kUuid, kIndex };
enum class AllocationPolicy { kDistributed, kPacked };
enum class MemoryLimit { kProportional, kNone };

struct PluginFlags {
  bool pass_device_specs = false;
  std::vector<DeviceListStrategy> device_list_strategy = {DeviceListStrategy::kEnvvar};
  DeviceIdStrategy device_id_strategy = DeviceIdStrategy::kUuid;
  std::string cdi_annotation_prefix = "cdi.k8s.io/";
  std::string container_driver_root = "/driver-root";
  AllocationPolicy shared_devices_allocation_policy = AllocationPolicy::kDistributed;
};

struct Flags {
  MigStrategy mig_strategy = MigStrategy::kNone;
  bool fail_on_init_error = true;
  std::optional<std::string> mps_root;                 // required for MPS sharing
  std::string nvidia_driver_root = "/";
  std::optional<std::string> nvidia_dev_root;           // defaults to the driver root
  PluginFlags plugin;

  // Not in the file (flag / env only).
  std::string kubelet_socket = "/var/lib/kubelet/device-plugins/kubelet.sock";
  std::optional<std::string> config_file;
  std::optional<std::string> nvml_library;              // default: search under the driver root

  std::string DevRoot() const { return nvidia_dev_root.value_or(nvidia_driver_root); }
};

// `resources.gpus` / `resources.mig` entries. `name` is stored without the "nvidia.com/" prefix.
struct ResourcePattern {
  std::string pattern;
  std::string name;
};

struct Resources {
  std::vector<ResourcePattern> gpus;  // empty: the default `*` -> gpu
  std::vector<ResourcePattern> mig;
};

// `devices:` of a shared resource: all (default), the first N GPUs, or a list of
// indices / "gpu:mig" indices / UUIDs.
struct DeviceSelector {
  enum class Kind { kAll, kCount, kList };
  Kind kind = Kind::kAll;
  int count = 0;
  std::vector<std::string> ids;
};

struct ReplicatedResource {
  std::string name;    // the resource being shared, without "nvidia.com/" (e.g. "gpu")
  std::string rename;  // optional new name, without "nvidia.com/"
  DeviceSelector devices;
  int replicas = 0;
};

struct ReplicatedResources {
  bool rename_by_default = false;
  std::optional<bool> fail_requests_greater_than_one;  // omitted: true under MPS, false otherwise
  std::vector<ReplicatedResource> resources;
};

struct MpsSharing : ReplicatedResources {
  bool per_container_limits = true;                    // ours
  MemoryLimit memory_limit = MemoryLimit::kProportional;  // ours
};

struct Sharing {
  ReplicatedResources time_slicing;
  MpsSharing mps;
};

struct Config {
  std::string version = "v1";
  Flags flags;
  Resources resources;
  Sharing sharing;
};

inline constexpr char kResourcePrefix[] = "nvidia.com/";

}  // namespace nvdp::config
