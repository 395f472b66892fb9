#include "config/validate.h"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "config/messages.h"

namespace nvdp::config {
namespace {

using internal::Cat;
using internal::Child;
using internal::Index;
using internal::Problem;
using internal::Quote;
using internal::Split;

constexpr std::string_view kTimeSlicingPath = "sharing.timeSlicing";
constexpr std::string_view kMpsPath = "sharing.mps";
// The MIG rule for MPS (docs/mig.md): upstream refuses MPS on MIG devices; we share them with
// per-container limits only, one MPS daemon per MIG device.
constexpr std::string_view kMpsOnMigNeedsPerContainerLimits =
    "MIG devices can be shared with MPS only with sharing.mps.perContainerLimits: true (MPS with "
    "uniform limits does not support MIG devices, as upstream)";
// sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// 8-4-4-4-12 hexadecimal digits.
bool IsUuidBody(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

enum class IdForm { kInvalid, kGpuIndex, kMigIndex, kGpuUuid, kMigUuid };

IdForm Classify(std::string_view id) {
  if (AllDigits(id)) return IdForm::kGpuIndex;
  if (std::vector<std::string_view> parts = Split(id, ':');
      parts.size() == 2 && AllDigits(parts[0]) && AllDigits(parts[1])) {
    return IdForm::kMigIndex;
  }
  if (id.starts_with("GPU-")) {
    return IsUuidBody(id.substr(4)) ? IdForm::kGpuUuid : IdForm::kInvalid;
  }
  if (id.starts_with("MIG-GPU-")) {
    std::string_view rest = id.substr(8);
    // Older drivers: MIG-GPU-<gpu uuid>/<gi>/<ci>.
    std::vector<std::string_view> parts = Split(rest, '/');
    return parts.size() == 3 && IsUuidBody(parts[0]) && AllDigits(parts[1]) && AllDigits(parts[2])
               ? IdForm::kMigUuid
               : IdForm::kInvalid;
  }
  if (id.starts_with("MIG-")) {
    return IsUuidBody(id.substr(4)) ? IdForm::kMigUuid : IdForm::kInvalid;
  }
  return IdForm::kInvalid;
}

// A device ID as shown in messages: indices bare, everything else quoted.
std::string ShowId(std::string_view id) { return AllDigits(id) ? std::string(id) : Quote(id); }

// A device selector as shown in messages: all, a count, or the list.
std::string ShowDevices(const DeviceSelector& d) {
  switch (d.kind) {
    case DeviceSelector::Kind::kAll:
      return "all";
    case DeviceSelector::Kind::kCount:
      return Cat(d.count);
    case DeviceSelector::Kind::kList:
      break;
  }
  std::string out = "[";
  for (size_t i = 0; i < d.ids.size(); ++i) {
    if (i > 0) out += ", ";
    if (out.size() > 100) {
      out += "...";
      break;
    }
    out += ShowId(d.ids[i]);
  }
  return out + "]";
}

std::string ShowBool(bool b) { return b ? "true" : "false"; }

bool IsAbsolute(std::string_view path) { return !path.empty() && path.front() == '/'; }

bool IsDnsSubdomain(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (std::string_view label : Split(name, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (!absl::ascii_isalnum(static_cast<unsigned char>(label.front())) ||
        !absl::ascii_isalnum(static_cast<unsigned char>(label.back()))) {
      return false;
    }
    for (char c : label) {
      if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
            absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-')) {
        return false;
      }
    }
  }
  return true;
}

// A list of strings as shown in messages: ["a", "b"].
std::string ShowList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    if (out.size() > 100) {
      out += "...";
      break;
    }
    out += Quote(items[i]);
  }
  return out + "]";
}

constexpr std::string_view kNoImex = "this plugin injects no IMEX channels; containers get none";
constexpr std::string_view kNoCdiSpec = "this plugin writes no CDI spec; ignored";

class Checker {
 public:
  explicit Checker(Config& config) : config_(config) {}

  Problems Run() {
    CheckVersion();
    CheckFlags();
    CheckImex();
    CheckResources();
    CheckSharing();
    CheckSocketPaths();
    // Last: entries_ points into the lists.
    Normalize();
    return std::move(out_);
  }

 private:
  void Error(std::string message) { out_.errors.push_back(std::move(message)); }
  void Warn(std::string message) { out_.warnings.push_back(std::move(message)); }

  void CheckVersion() {
    if (!config_.version.empty() && config_.version != kVersion) {
      Error(Problem("version", Quote(config_.version), "must be v1"));
    }
  }

  void AbsolutePath(std::string_view path, std::string_view value) {
    if (!IsAbsolute(value)) Error(Problem(path, Quote(value), "must be an absolute path"));
  }

  void CheckFlags() {
    const Flags& f = config_.flags;
    if (f.mps_root.has_value() && !f.mps_root->empty()) AbsolutePath("flags.mpsRoot", *f.mps_root);
    AbsolutePath("flags.nvidiaDriverRoot", f.nvidia_driver_root);
    if (f.nvidia_dev_root.has_value()) AbsolutePath("flags.nvidiaDevRoot", *f.nvidia_dev_root);

    const PluginFlags& p = f.plugin;
    if (p.device_list_strategy.empty()) {
      Error(Problem("flags.plugin.deviceListStrategy", "[]",
                    "must list at least one of envvar, volume-mounts, "
                    "cdi-annotations, cdi-cri"));
    }
    AbsolutePath("flags.plugin.containerDriverRoot", p.container_driver_root);
    const bool uses_annotations =
        std::find(p.device_list_strategy.begin(), p.device_list_strategy.end(),
                  DeviceListStrategy::kCdiAnnotations) != p.device_list_strategy.end();
    if (uses_annotations) {
      const std::string_view prefix = p.cdi_annotation_prefix;
      if (!prefix.ends_with('/') || !IsDnsSubdomain(prefix.substr(0, prefix.size() - 1))) {
        Error(Problem("flags.plugin.cdiAnnotationPrefix", Quote(p.cdi_annotation_prefix),
                      "must be a DNS subdomain followed by '/' (e.g. cdi.k8s.io/) when "
                      "deviceListStrategy includes cdi-annotations"));
      }
    }

    if (f.device_discovery_strategy == DeviceDiscoveryStrategy::kTegra) {
      Error(Problem("flags.deviceDiscoveryStrategy", Quote(ToString(f.device_discovery_strategy)),
                    "tegra (Jetson) discovery is not supported; use auto or nvml"));
    }
    if (p.nvidia_cdi_hook_path != PluginFlags{}.nvidia_cdi_hook_path) {
      Warn(Problem("flags.plugin.nvidiaCDIHookPath", Quote(p.nvidia_cdi_hook_path), kNoCdiSpec));
    }
    if (!p.cdi_feature_flags.empty()) {
      Warn(Problem("flags.plugin.cdiFeatureFlags", ShowList(p.cdi_feature_flags), kNoCdiSpec));
    }
    if (!p.cdi_disable_hooks.empty()) {
      Warn(Problem("--cdi-disable-hooks", ShowList(p.cdi_disable_hooks), kNoCdiSpec));
    }

    // Empty: serve without registering with kubelet (upstream's KUBELET_SOCKET="").
    if (f.kubelet_socket.empty()) {
      // valid
    } else if (!IsAbsolute(f.kubelet_socket)) {
      Error(Problem("--kubelet-socket", Quote(f.kubelet_socket), "must be an absolute path"));
    } else if (f.kubelet_socket.size() > kMaxSocketPath) {
      Error(
          Problem("--kubelet-socket", Quote(f.kubelet_socket),
                  Cat("must be at most ", kMaxSocketPath, " bytes (the unix socket path limit)")));
    }
    if (f.nvml_library.has_value() && f.nvml_library->empty()) {
      Error(Problem("--nvml-library", Quote(""), "must not be empty"));
    }
  }

  void CheckImex() {
    const Imex& imex = config_.imex;
    if (!imex.channel_ids.empty()) {
      const DeviceSelector ids{.kind = DeviceSelector::Kind::kList, .ids = imex.channel_ids};
      Warn(Problem("imex.channelIDs", ShowDevices(ids), kNoImex));
    }
    if (imex.required) Warn(Problem("imex.required", ShowBool(true), kNoImex));
  }

  // Checks a resource name as stored (without "nvidia.com/"); false if invalid.
  bool ResourceName(std::string_view path, std::string_view name) {
    if (name.empty()) {
      Error(Problem(path, Quote(name), "must not be empty"));
      return false;
    }
    if (name.find('/') != std::string_view::npos) {
      Error(Problem(path, Quote(name),
                    "must be a resource in the nvidia.com/ domain, e.g. gpu or "
                    "nvidia.com/gpu"));
      return false;
    }
    if (name.size() > static_cast<size_t>(kMaxResourceNameLength)) {
      Error(Problem(path, Quote(name),
                    Cat("must be at most ", kMaxResourceNameLength,
                        " characters after nvidia.com/ (has ", name.size(), ")")));
      return false;
    }
    if (!IsValidResourceName(name)) {
      Error(Problem(path, Quote(name),
                    "must be a DNS subdomain after nvidia.com/: lowercase "
                    "letters, digits, '-' and "
                    "'.', each part starting and ending with a letter or digit"));
      return false;
    }
    return true;
  }

  void CheckPatterns(std::string_view path, const std::vector<ResourcePattern>& list) {
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string entry = Index(path, i);
      if (list[i].pattern.empty()) {
        Error(Problem(Child(entry, "pattern"), Quote(""),
                      "must not be empty (a product name pattern, e.g. '*' or 'A100*')"));
      }
      ResourceName(Child(entry, "name"), list[i].name);
    }
  }

  void CheckResources() {
    CheckPatterns("resources.gpus", config_.resources.gpus);
    CheckPatterns("resources.mig", config_.resources.mig);
    if (!config_.resources.mig.empty() && config_.flags.mig_strategy == MigStrategy::kNone) {
      Warn(Problem("resources.mig",
                   Cat(config_.resources.mig.size(),
                       config_.resources.mig.size() == 1 ? " entry" : " entries"),
                   "only used with migStrategy single or mixed (ignored)"));
    }
  }

  void CheckDevices(std::string_view path, const DeviceSelector& devices, bool is_mps) {
    switch (devices.kind) {
      case DeviceSelector::Kind::kAll:
        return;
      case DeviceSelector::Kind::kCount:
        if (devices.count < 1) {
          Error(Problem(path, Cat(devices.count),
                        "must be all, a positive count, or a list of devices"));
        }
        return;
      case DeviceSelector::Kind::kList:
        break;
    }
    if (devices.ids.empty()) {
      Error(Problem(path, "[]", "must list at least one device (or be all)"));
      return;
    }
    std::set<std::string_view> seen;
    for (size_t j = 0; j < devices.ids.size(); ++j) {
      const std::string& id = devices.ids[j];
      const std::string item = Index(path, j);
      const IdForm form = Classify(id);
      if (form == IdForm::kInvalid) {
        Error(Problem(item, ShowId(id),
                      "must be a GPU index (0, 1, ...), a MIG index "
                      "\"<gpu>:<mig>\", or a UUID "
                      "(GPU-... or MIG-...)"));
        continue;
      }
      if (!seen.insert(id).second) {
        Error(Problem(item, ShowId(id), "listed more than once; list each device once"));
        continue;
      }
      if (is_mps && !config_.sharing.mps.per_container_limits &&
          (form == IdForm::kMigIndex || form == IdForm::kMigUuid)) {
        Error(Problem(item, ShowId(id), kMpsOnMigNeedsPerContainerLimits));
      }
    }
  }

  void CheckReplicas(std::string_view path, int replicas, bool is_mps) {
    if (replicas < kMinReplicas) {
      Error(Problem(path, Cat(replicas), Cat("must be at least ", kMinReplicas)));
      return;
    }
    if (is_mps && !config_.sharing.mps.per_container_limits) {
      if (replicas > kMaxMpsClients) {
        Error(Problem(path, Cat(replicas),
                      Cat("must be at most ", kMaxMpsClients,
                          " with perContainerLimits: false (each replica is an MPS "
                          "client, and MPS serves at most ",
                          kMaxMpsClients, " per GPU)")));
      }
      return;
    }
    if (replicas > kMaxReplicas) {
      Error(Problem(
          path, Cat(replicas),
          Cat("must be at most ", kMaxReplicas, is_mps ? " shares per GPU" : " replicas per GPU")));
    }
  }

  struct Entry {
    std::string path;  // e.g. "sharing.mps.resources[0]"
    const ReplicatedResource* resource;
    std::string shared_name;
    size_t index;          // in its section's list
    bool dropped = false;  // a time-slicing entry MPS takes over
  };

  void CheckSection(std::string_view section_path, const ReplicatedResources& section,
                    bool is_mps) {
    const std::string list_path = Child(section_path, "resources");
    std::map<std::string, std::string> first_by_name;  // name -> entry path
    for (size_t i = 0; i < section.resources.size(); ++i) {
      const ReplicatedResource& r = section.resources[i];
      const std::string entry = Index(list_path, i);
      const std::string name_path = Child(entry, "name");
      const bool name_ok = ResourceName(name_path, r.name);
      bool rename_ok = true;
      if (!r.rename.empty()) rename_ok = ResourceName(Child(entry, "rename"), r.rename);
      CheckReplicas(Child(entry, "replicas"), r.replicas, is_mps);
      CheckDevices(Child(entry, "devices"), r.devices, is_mps);
      if (!name_ok) continue;

      const std::string shared = SharedResourceName(section, r);
      if (r.rename.empty() && section.rename_by_default &&
          shared.size() > static_cast<size_t>(kMaxResourceNameLength)) {
        Error(Problem(name_path, Quote(r.name),
                      Cat("too long for renameByDefault: \"", shared, "\" has ", shared.size(),
                          " characters, at most ", kMaxResourceNameLength, " allowed")));
      }
      if (auto [it, inserted] = first_by_name.emplace(r.name, entry); !inserted) {
        Error(Problem(
            name_path, Quote(r.name),
            Cat("already listed at ", it->second, "; list each resource once per section")));
        continue;
      }
      const bool is_mig = r.name.starts_with("mig-");
      const bool named_in_resources_mig =
          std::any_of(config_.resources.mig.begin(), config_.resources.mig.end(),
                      [&](const ResourcePattern& p) { return p.name == r.name; });
      if (is_mps && is_mig && !config_.sharing.mps.per_container_limits) {
        Error(Problem(name_path, Quote(r.name), kMpsOnMigNeedsPerContainerLimits));
      } else if (is_mig && config_.flags.mig_strategy != MigStrategy::kMixed &&
                 !named_in_resources_mig) {
        Warn(Problem(name_path, Quote(r.name),
                     "MIG resources are advertised only with migStrategy "
                     "mixed; this entry matches nothing"));
      }
      if (is_mps && r.devices.kind != DeviceSelector::Kind::kAll && r.rename.empty()) {
        // Upstream ignores `devices`; so do we unless the entry is renamed (our extension).
        Warn(Problem(Child(entry, "devices"), ShowDevices(r.devices),
                     "ignored without rename, as upstream does: every GPU is shared; add rename "
                     "to share only these devices"));
        clear_devices_.push_back(i);
      } else if (!is_mps && r.devices.kind != DeviceSelector::Kind::kAll && shared == r.name) {
        Warn(Problem(Child(entry, "devices"), ShowDevices(r.devices),
                     "the devices not selected keep the same resource name "
                     "as the replicas; set rename or renameByDefault to "
                     "tell them apart"));
      }
      if (rename_ok) entries_.push_back({entry, &r, shared, i});
    }
  }

  void CheckSharing() {
    const Sharing& s = config_.sharing;
    CheckSection(kTimeSlicingPath, s.time_slicing, /*is_mps=*/false);
    const size_t first_mps = entries_.size();
    CheckSection(kMpsPath, s.mps, /*is_mps=*/true);

    // A resource may use one sharing method: MPS wins, the time-slicing entry is dropped.
    for (size_t t = 0; t < first_mps; ++t) {
      for (size_t m = first_mps; m < entries_.size(); ++m) {
        if (entries_[m].resource->name != entries_[t].resource->name) continue;
        Warn(Problem(Child(entries_[t].path, "name"), Quote(entries_[t].resource->name),
                     Cat("also shared by ", entries_[m].path,
                         "; a resource can use one sharing method and MPS wins: this "
                         "time-slicing entry is ignored")));
        entries_[t].dropped = true;
        drop_time_slicing_.push_back(entries_[t].index);
        break;
      }
    }
    // Advertised (shared) names must be unique across both sections.
    std::map<std::string, const Entry*> by_shared;
    for (const Entry& e : entries_) {
      if (e.dropped) continue;
      auto [it, inserted] = by_shared.emplace(e.shared_name, &e);
      if (inserted || it->second->resource->name == e.resource->name) continue;
      const bool renamed = !e.resource->rename.empty();
      Error(Problem(Child(e.path, renamed ? "rename" : "name"),
                    Quote(renamed ? e.resource->rename : e.resource->name),
                    Cat("advertised as \"", e.shared_name, "\", which ", it->second->path,
                        " already uses; shared resource names must be unique")));
    }

    if (!IsConfigured(s.mps)) return;
    const Flags& f = config_.flags;
    // Only an explicit empty value unsets it (the default is /run/nvidia/mps).
    if (!f.mps_root.has_value() || f.mps_root->empty()) {
      Error(Problem("flags.mpsRoot", Quote(""),
                    Cat("required when sharing.mps has resources: set a directory, or remove the "
                        "empty value to use the default ",
                        kDefaultMpsRoot)));
    }
    if (f.mig_strategy == MigStrategy::kMixed && !s.mps.per_container_limits) {
      Error(Problem("flags.migStrategy", Quote(ToString(f.mig_strategy)),
                    "must be none or single when sharing.mps has resources with "
                    "perContainerLimits: false (upstream's rule: MPS with uniform limits does not "
                    "support MIG devices); set sharing.mps.perContainerLimits: true to share MIG "
                    "devices with MPS, one MPS daemon per MIG device"));
    }
    if (s.mps.per_container_limits && s.mps.fail_requests_greater_than_one.value_or(false)) {
      Warn(Problem("sharing.mps.failRequestsGreaterThanOne", ShowBool(true),
                   "with perContainerLimits: true every container gets exactly "
                   "one share; omit it "
                   "(or set false) to allow requests for several shares"));
    }
  }

  // Every unix socket path the config implies must fit sun_path, or the daemon could never serve or
  // register: the plugin socket of each resource name this config can advertise, beside
  // kubelet.sock, and each MPS daemon's control socket, <mpsRoot>/nvidia.com/<name>/pipe/control.
  void CheckSocketPaths() {
    const Flags& f = config_.flags;
    std::set<std::string> names;  // without "nvidia.com/"
    if (config_.resources.gpus.empty()) names.insert("gpu");
    for (const auto& p : config_.resources.gpus) names.insert(p.name);
    for (const auto& p : config_.resources.mig) names.insert(p.name);
    std::set<std::string> mps_names;
    for (const Entry& e : entries_) {
      if (e.dropped) continue;
      names.insert(e.shared_name);
      if (e.path.starts_with(kMpsPath)) mps_names.insert(e.shared_name);
    }
    const std::string dir = f.kubelet_socket.empty()
                                ? std::string("/var/lib/kubelet/device-plugins")
                                : f.kubelet_socket.substr(0, f.kubelet_socket.rfind('/'));
    for (const std::string& name : names) {
      if (!IsValidResourceName(name)) continue;  // reported as such
      const std::string path = Cat(dir, "/", PluginSocketName(name));
      if (path.size() > kMaxSocketPath) {
        Error(
            Problem("--kubelet-socket", Quote(f.kubelet_socket),
                    Cat("puts the socket of ", kResourcePrefix, name, " at ", path, " (",
                        path.size(), " bytes), over the ", kMaxSocketPath,
                        "-byte unix socket path limit; use a shorter directory or resource name")));
      }
    }
    if (!f.mps_root.has_value() || f.mps_root->empty()) return;
    for (const std::string& name : mps_names) {
      // A mig-* resource has one daemon per MIG device, under <resource>/MIG-<uuid> (a UUID is
      // 36 characters).
      const bool mig = name.starts_with("mig-");
      const std::string path =
          Cat(*f.mps_root, "/", kResourcePrefix, name, mig ? "/MIG-<uuid>" : "", "/pipe/control");
      const size_t size = path.size() + (mig ? 36 - std::string_view("<uuid>").size() : 0);
      if (size > kMaxSocketPath) {
        Error(Problem("flags.mpsRoot", Quote(*f.mps_root),
                      Cat("gives the MPS control socket ", path, " (", size, " bytes), over the ",
                          kMaxSocketPath,
                          "-byte unix socket path limit; use a shorter mpsRoot or resource name")));
      }
    }
  }

  // Applies the rewrites the checks decided on (their warnings are already given).
  void Normalize() {
    entries_.clear();
    for (size_t i : clear_devices_) config_.sharing.mps.resources[i].devices = DeviceSelector{};
    std::vector<ReplicatedResource>& ts = config_.sharing.time_slicing.resources;
    std::sort(drop_time_slicing_.rbegin(), drop_time_slicing_.rend());
    for (size_t i : drop_time_slicing_) ts.erase(ts.begin() + static_cast<std::ptrdiff_t>(i));
  }

  Config& config_;
  Problems out_;
  std::vector<Entry> entries_;
  std::vector<size_t> clear_devices_;      // sharing.mps.resources indices
  std::vector<size_t> drop_time_slicing_;  // sharing.timeSlicing.resources indices
};

}  // namespace

Problems CheckAndNormalize(Config& config) { return Checker(config).Run(); }

Problems Check(const Config& config) {
  Config copy = config;
  return CheckAndNormalize(copy);
}

std::vector<std::string> Validate(const Config& config) { return Check(config).errors; }

}  // namespace nvdp::config
