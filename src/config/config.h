// The plugin's configuration: the upstream `version: v1` schema plus our
// sharing keys, as plain structs whose member initialisers are the documented
// defaults (docs/configuration.md), and a few pure helpers that resolve
// defaults which depend on other keys.
//
// Pure data: loading (loader.h) and validation (validate.h) produce and check
// it; the rest of the daemon only reads it. Copyable, no locking needed; every
// function here is pure and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nvdp::config {

enum class MigStrategy { kNone, kSingle, kMixed };
enum class DeviceListStrategy { kEnvvar, kVolumeMounts, kCdiAnnotations, kCdiCri };
enum class DeviceIdStrategy { kUuid, kIndex };
enum class AllocationPolicy { kDistributed, kPacked };
enum class MemoryLimit { kProportional, kNone };
// Upstream's --device-discovery-strategy. auto and nvml both discover through NVML here; tegra
// (Jetson, no NVML) is not supported and is refused by validation.
enum class DeviceDiscoveryStrategy { kAuto, kNvml, kTegra };

// Upstream's default for flags.mpsRoot (its Helm chart's value), used by both binaries.
inline constexpr char kDefaultMpsRoot[] = "/run/nvidia/mps";

struct PluginFlags {
  bool pass_device_specs = false;
  std::vector<DeviceListStrategy> device_list_strategy = {DeviceListStrategy::kEnvvar};
  DeviceIdStrategy device_id_strategy = DeviceIdStrategy::kUuid;
  std::string cdi_annotation_prefix = "cdi.k8s.io/";
  // --nvidia-cdi-hook-path (alias --nvidia-ctk-path). Accepted for compatibility; this plugin
  // writes no CDI spec, so nothing runs it.
  std::string nvidia_cdi_hook_path = "/usr/bin/nvidia-ctk";
  // Where the host driver root is mounted in the plugin's container (--driver-root-ctr-path, alias
  // --container-driver-root). NVML is searched under it.
  std::string container_driver_root = "/driver-root";
  AllocationPolicy shared_devices_allocation_policy = AllocationPolicy::kDistributed;
  // --cdi-feature-flags / --cdi-disable-hooks: accepted for compatibility, not used (no CDI spec).
  std::vector<std::string> cdi_feature_flags;
  std::vector<std::string> cdi_disable_hooks;
};

// Upstream's `imex` section and --imex-channel-ids / --imex-required. Accepted and warned about:
// this plugin injects no IMEX channels.
struct Imex {
  std::vector<std::string> channel_ids;
  bool required = false;
};

struct Flags {
  MigStrategy mig_strategy = MigStrategy::kNone;
  bool fail_on_init_error = true;
  // Host root of the MPS pipes, logs, markers and shm. Set to "" by the flag or the file: unset,
  // and MPS sharing is refused by validation (an empty MPS_ROOT counts as not given).
  std::optional<std::string> mps_root = std::string(kDefaultMpsRoot);
  std::string nvidia_driver_root = "/";  // host path (--driver-root, alias --nvidia-driver-root)
  std::optional<std::string> nvidia_dev_root;  // defaults to the driver root
  // Allocate adds NVIDIA_GDRCOPY / NVIDIA_GDS / NVIDIA_MOFED=enabled (non-CDI strategies), as
  // upstream does.
  bool gdrcopy_enabled = false;
  bool gds_enabled = false;
  bool mofed_enabled = false;
  DeviceDiscoveryStrategy device_discovery_strategy = DeviceDiscoveryStrategy::kAuto;
  PluginFlags plugin;

  // Not in the file (flag / env only). Empty: serve the resources but do not register them with
  // kubelet (upstream's KUBELET_SOCKET="").
  std::string kubelet_socket = "/var/lib/kubelet/device-plugins/kubelet.sock";
  std::optional<std::string> config_file;
  std::optional<std::string> nvml_library;  // default: search under the driver root

  std::string DevRoot() const { return nvidia_dev_root.value_or(nvidia_driver_root); }
};

// `resources.gpus` / `resources.mig` entries. `name` is stored without the
// "nvidia.com/" prefix.
struct ResourcePattern {
  std::string pattern;
  std::string name;
};

struct Resources {
  std::vector<ResourcePattern> gpus;  // empty: the default `*` -> gpu
  std::vector<ResourcePattern> mig;
};

// `devices:` of a shared resource: all (default), the first N GPUs, or a list
// of indices / "gpu:mig" indices / UUIDs.
struct DeviceSelector {
  enum class Kind { kAll, kCount, kList };
  Kind kind = Kind::kAll;
  int count = 0;
  std::vector<std::string> ids;  // kList: "0", "1:2", "GPU-<uuid>", "MIG-<uuid>" (integers as text)
};

struct ReplicatedResource {
  std::string name;    // the resource being shared, without "nvidia.com/" (e.g. "gpu")
  std::string rename;  // optional new name, without "nvidia.com/"
  DeviceSelector devices;
  int replicas = 0;
};

struct ReplicatedResources {
  bool rename_by_default = false;
  std::optional<bool> fail_requests_greater_than_one;  // omitted: see
                                                       // FailRequestsGreaterThanOne
  std::vector<ReplicatedResource> resources;
};

struct MpsSharing : ReplicatedResources {
  // Ours. Omitted: false, upstream's uniform mode (a daemon-wide 1/n cap that pods cannot raise),
  // so an existing upstream config keeps its isolation. `true` turns on flexible MPS.
  bool per_container_limits = false;
  MemoryLimit memory_limit = MemoryLimit::kProportional;  // ours
  // Ours, per-container limits only. Report as Healthy only the free shares every valid request can
  // use (whole free GPUs and the largest partial hole), so that the scheduler's count never sends a
  // pod that does not fit. Needs kubelet's PodResources socket; without it the plugin runs
  // unshaped.
  bool capacity_shaping = true;
};

struct Sharing {
  ReplicatedResources time_slicing;
  MpsSharing mps;
};

struct Config {
  std::string version = "v1";  // "" is read as v1, as upstream does
  Flags flags;
  Resources resources;
  Sharing sharing;
  Imex imex;
};

inline constexpr char kResourcePrefix[] = "nvidia.com/";
inline constexpr char kVersion[] = "v1";

// Bounds checked by Validate (docs/configuration.md explains each).
inline constexpr int kMinReplicas = 2;
// Uniform MPS (perContainerLimits: false): every replica is one MPS client, and
// MPS serves at most 48 clients per GPU on Volta and later. (Pre-Volta GPUs
// serve 16; BuildResources checks that against the inventory.)
inline constexpr int kMaxMpsClients = 48;
inline constexpr int kMaxMpsClientsPreVolta = 16;
// Time-slicing replicas and per-container MPS shares per GPU. Keeps
// ListAndWatch small (8 GPUs x 1024 IDs is about 0.6 MB, well below gRPC's 4
// MiB message limit).
inline constexpr int kMaxReplicas = 1024;
// The part of a resource name after "nvidia.com/".
inline constexpr int kMaxResourceNameLength = 63;

// Names as written in the config file ("none", "volume-mounts", ...).
std::string_view ToString(MigStrategy value);
std::string_view ToString(DeviceListStrategy value);
std::string_view ToString(DeviceIdStrategy value);
std::string_view ToString(AllocationPolicy value);
std::string_view ToString(MemoryLimit value);
std::string_view ToString(DeviceDiscoveryStrategy value);

// Inverses of ToString (exact, case-sensitive as upstream); nullopt for
// anything else.
std::optional<MigStrategy> ParseMigStrategy(std::string_view text);
std::optional<DeviceListStrategy> ParseDeviceListStrategy(std::string_view text);
std::optional<DeviceIdStrategy> ParseDeviceIdStrategy(std::string_view text);
std::optional<AllocationPolicy> ParseAllocationPolicy(std::string_view text);
std::optional<MemoryLimit> ParseMemoryLimit(std::string_view text);
std::optional<DeviceDiscoveryStrategy> ParseDeviceDiscoveryStrategy(std::string_view text);

// "nvidia.com/gpu" -> "gpu"; anything without that exact prefix is returned
// unchanged.
std::string StripResourcePrefix(std::string_view name);

// True for a valid name after "nvidia.com/": at most 63 characters and a DNS
// subdomain (lowercase letters, digits, '-' and '.', each dot-separated label
// starting and ending with a letter or digit).
bool IsValidResourceName(std::string_view name);

// The name (without "nvidia.com/") a shared resource is advertised under:
// `rename` if given, else
// "<name>.shared" when the section has renameByDefault, else `name`.
std::string SharedResourceName(const ReplicatedResources& section, const ReplicatedResource& r);

// Whether a request for more than one replica/share is refused. An explicit
// value wins. Omitted: true under uniform MPS (as upstream), false under
// time-slicing (as upstream) and under per-container MPS (where a request for k
// shares is the point of the mode).
bool FailRequestsGreaterThanOne(const ReplicatedResources& section, bool is_mps,
                                bool per_container_limits);
bool FailRequestsGreaterThanOne(const MpsSharing& mps);

// The plugin socket's file name for a resource name after "nvidia.com/", as upstream names it:
// "gpu" -> "nvidia-gpu.sock", "mig-1g.5gb" -> "nvidia-mig-1g.5gb.sock" ('/' becomes '-').
std::string PluginSocketName(std::string_view short_name);

// Whether a sharing section is in use (has at least one resource).
inline bool IsConfigured(const ReplicatedResources& section) { return !section.resources.empty(); }

}  // namespace nvdp::config
