// BuildResources: which resources this node advertises, from the config and the
// inventory.
//
// 0. flags.migStrategy picks the devices (MigStrategyDevices in mig.cc): full GPUs, MIG devices,
//    or both.
// 1. Each device gets its base name: a full GPU from `resources.gpus` (default `*` -> gpu), the
//    first pattern that matches its product name; a MIG device from `resources.mig`, the first
//    pattern that matches its profile ("1g.5gb"), or when that list is empty the strategy's
//    default (single: gpu; mixed: mig-<profile>, none for profiles like 1c.3g.20gb). `*` is the
//    only wildcard and the whole name must match (as upstream). Devices that match no pattern are
//    not advertised.
// 2. Each `sharing.timeSlicing.resources[]` / `sharing.mps.resources[]` entry whose `name` is one
//    of those resources moves the devices its `devices` selects (all, the first N, or a list of
//    GPU indices, "gpu:mig" MIG indices and UUIDs; upstream ignores `devices`, we honour it:
//    config::CheckAndNormalize, run by LoadConfig, has already cleared it on MPS entries without
//    `rename`, as upstream, and dropped time-slicing entries for resources MPS also shares) into a
//    shared resource named `rename`, else `<name>.shared` with renameByDefault, else `<name>`. The
//    other devices stay under the unshared name. Entries for a resource this node does not have
//    are skipped, so one config can serve different nodes.
// 3. Devices that end up under one name are merged; a name that would mean two different things
//    (modes, replicas, settings; full GPUs and MIG devices; two MIG profiles) is an error, as is a
//    device claimed by two entries, and MPS with uniform limits on MIG devices (upstream refuses
//    MPS on MIG; we allow it only with per-container limits, one MPS daemon per MIG device).
//
// Pure; safe to call concurrently.
#include <algorithm>
#include <map>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharing/internal.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {
namespace {

// Upstream's wildcard match: '*' matches any run of characters, everything else
// is literal, and the pattern must cover the whole name.
bool WildcardMatch(std::string_view pattern, std::string_view name) {
  const size_t first = pattern.find('*');
  if (first == std::string_view::npos) return pattern == name;
  const size_t last = pattern.rfind('*');
  const std::string_view head = pattern.substr(0, first);
  const std::string_view tail = pattern.substr(last + 1);
  if (name.size() < head.size() + tail.size() || !name.starts_with(head) || !name.ends_with(tail)) {
    return false;
  }
  // The literal runs between the first and last '*', leftmost match each.
  size_t pos = head.size();
  const size_t end = name.size() - tail.size();
  size_t i = first + 1;
  while (i <= last) {
    const size_t next = pattern.find('*', i);
    const std::string_view run = pattern.substr(i, next - i);
    if (!run.empty()) {
      const size_t found = name.substr(0, end).find(run, pos);
      if (found == std::string_view::npos) return false;
      pos = found + run.size();
    }
    i = next + 1;
  }
  return true;
}

// "nvidia.com/x" and "x" both name resource x.
std::string ShortForm(std::string_view name) {
  std::string_view prefix = config::kResourcePrefix;
  if (name.starts_with(prefix)) name.remove_prefix(prefix.size());
  return std::string(name);
}

std::string FullName(std::string_view name) {
  return absl::StrCat(config::kResourcePrefix, ShortForm(name));
}

// Everything about a resource except its GPUs: two sources of GPUs may merge
// under one name only if these agree.
struct Kind {
  Mode mode = Mode::kExclusive;
  int replicas = 1;
  bool fail_requests_greater_than_one = false;
  bool per_container_limits = false;
  config::MemoryLimit memory_limit = config::MemoryLimit::kProportional;
  config::AllocationPolicy policy = config::AllocationPolicy::kDistributed;
  bool capacity_shaping = false;
  // For messages: "resources.gpus" or "sharing.mps.resources[0]".
  std::string origin;

  bool SameAs(const Kind& o) const {
    return mode == o.mode && replicas == o.replicas &&
           fail_requests_greater_than_one == o.fail_requests_greater_than_one &&
           per_container_limits == o.per_container_limits && memory_limit == o.memory_limit &&
           policy == o.policy && capacity_shaping == o.capacity_shaping;
  }
  std::string Summary() const {
    if (mode == Mode::kExclusive) return "unshared";
    return absl::StrCat(std::string(ModeName(mode)), " with ", replicas, " replicas");
  }
};

// Where each device the MIG strategy advertises ends up.
struct Placement {
  device::Gpu device;
  // Its `resources.gpus` / `resources.mig` name, short form; empty: not advertised.
  std::string base;
  // Full name of the resource it is advertised under.
  std::string name;
  Kind kind;
  // The sharing entry that took it, if any.
  std::string claimed_by;
};

bool IsDecimal(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Whether a `devices` list item names `device`: a GPU index ("0") names a full GPU, a MIG index
// ("0:3") a MIG device, a UUID either.
bool Names(std::string_view id, const device::Gpu& device) {
  if (IsDecimal(id)) return !device.IsMig() && std::to_string(device.index) == id;
  if (const size_t colon = id.find(':');
      colon != std::string_view::npos && IsDecimal(id.substr(0, colon))) {
    return device.IsMig() && device.IndexId() == id;
  }
  return device.uuid == id;
}

absl::StatusOr<std::vector<size_t>> SelectDevices(const config::DeviceSelector& devices,
                                                  const std::vector<size_t>& of_resource,
                                                  const std::vector<Placement>& placements,
                                                  const device::Inventory& inventory,
                                                  const std::string& resource,
                                                  const std::string& where) {
  using K = config::DeviceSelector::Kind;
  // Messages say "GPU" unless MIG devices are involved.
  const bool mig = !of_resource.empty() && placements[of_resource.front()].device.IsMig();
  const std::string one = mig ? "MIG device" : "GPU";
  switch (devices.kind) {
    case K::kAll:
      return of_resource;
    case K::kCount:
      if (devices.count <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".devices: a device count must be positive; got ", devices.count));
      }
      if (static_cast<size_t>(devices.count) > of_resource.size()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".devices: asks for the first ",
                                                       devices.count, " ", one, "s of ", resource,
                                                       ", but this node has ", of_resource.size()));
      }
      return std::vector<size_t>(of_resource.begin(), of_resource.begin() + devices.count);
    case K::kList:
      break;
  }
  std::vector<size_t> out;
  std::vector<std::string> missing, foreign, hidden;
  for (const std::string& id : devices.ids) {
    std::optional<size_t> found;
    for (size_t i = 0; i < placements.size() && !found; ++i) {
      if (Names(id, placements[i].device)) found = i;
    }
    if (!found) {
      const auto named = [&](const device::Gpu& d) { return Names(id, d); };
      const bool exists =
          std::any_of(inventory.gpus.begin(), inventory.gpus.end(), named) ||
          std::any_of(inventory.mig_devices.begin(), inventory.mig_devices.end(), named);
      (exists ? hidden : missing).push_back(id);
    } else if (std::find(of_resource.begin(), of_resource.end(), *found) == of_resource.end()) {
      foreign.push_back(id);
    } else if (std::find(out.begin(), out.end(), *found) == out.end()) {
      out.push_back(*found);
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".devices: no ", inventory.mig_devices.empty() ? "GPU" : "GPU or MIG device",
        " on this node has ", missing.size() == 1 ? "index or UUID " : "the indices or UUIDs ",
        internal::QuoteAll(missing)));
  }
  if (!hidden.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".devices: ", internal::QuoteAll(hidden), hidden.size() == 1 ? " is" : " are",
        " not advertised under this flags.migStrategy (none advertises full GPUs only; single "
        "and mixed advertise a MIG-enabled GPU as its MIG devices, \"<gpu>:<mig>\")"));
  }
  if (!foreign.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".devices: ", internal::QuoteAll(foreign),
                                                   foreign.size() == 1
                                                       ? absl::StrCat(" is not a ", one, " of ")
                                                       : absl::StrCat(" are not ", one, "s of "),
                                                   resource));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status ApplySharing(const config::ReplicatedResources& sharing, Kind kind,
                          const std::string& section, const device::Inventory& inventory,
                          std::vector<Placement>& placements) {
  for (size_t e = 0; e < sharing.resources.size(); ++e) {
    const config::ReplicatedResource& entry = sharing.resources[e];
    const std::string where = absl::StrCat(section, ".resources[", e, "]");
    const std::string base = ShortForm(entry.name);
    std::vector<size_t> of_resource;
    for (size_t i = 0; i < placements.size(); ++i) {
      if (!placements[i].base.empty() && placements[i].base == base) of_resource.push_back(i);
    }
    if (of_resource.empty()) continue;
    if (entry.replicas < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".replicas: must be at least 1; got ", entry.replicas));
    }
    auto selected =
        SelectDevices(entry.devices, of_resource, placements, inventory, FullName(base), where);
    if (!selected.ok()) return selected.status();

    std::string target = base;
    if (!entry.rename.empty()) {
      target = ShortForm(entry.rename);
    } else if (sharing.rename_by_default) {
      target = absl::StrCat(base, ".shared");
    }
    Kind entry_kind = kind;
    entry_kind.replicas = entry.replicas;
    entry_kind.origin = where;
    for (size_t i : *selected) {
      Placement& p = placements[i];
      if (!p.claimed_by.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(p.claimed_by, " and ", where, " both share ",
                                                       internal::Describe(p.device)));
      }
      p.claimed_by = where;
      p.name = FullName(target);
      p.kind = entry_kind;
    }
  }
  return absl::OkStatus();
}

// Step 1: a device's `resources.gpus` / `resources.mig` name (short form); nullopt: not advertised.
std::optional<std::string> BaseName(const config::Config& config, const device::Gpu& device) {
  static const std::vector<config::ResourcePattern> kDefaultGpus = {{"*", "gpu"}};
  if (!device.IsMig()) {
    const auto& patterns = config.resources.gpus.empty() ? kDefaultGpus : config.resources.gpus;
    for (const auto& p : patterns) {
      if (WildcardMatch(p.pattern, device.name)) return ShortForm(p.name);
    }
    return std::nullopt;
  }
  const std::string& profile = device.mig->profile;
  if (config.resources.mig.empty()) {
    if (config.flags.mig_strategy == config::MigStrategy::kSingle) return "gpu";
    return DefaultMixedMigResource(profile);
  }
  for (const auto& p : config.resources.mig) {
    if (WildcardMatch(p.pattern, profile)) return ShortForm(p.name);
  }
  return std::nullopt;
}

// Step 3's MIG rules for one resource's devices (sorted): not both full GPUs and MIG devices, one
// MIG profile, and MPS on MIG devices only with per-container limits.
absl::Status CheckMigResource(const std::string& name, const Kind& kind,
                              const std::vector<device::Gpu>& devices) {
  const auto mig =
      std::find_if(devices.begin(), devices.end(), [](const device::Gpu& d) { return d.IsMig(); });
  if (mig == devices.end()) return absl::OkStatus();
  const auto full =
      std::find_if(devices.begin(), devices.end(), [](const device::Gpu& d) { return !d.IsMig(); });
  if (full != devices.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource ", name, " would hold both full GPUs (", internal::Describe(*full),
                     ") and MIG devices (", internal::Describe(*mig),
                     "); give them different names in resources.gpus and resources.mig"));
  }
  for (const device::Gpu& d : devices) {
    if (d.mig->profile != mig->mig->profile) {
      return absl::InvalidArgumentError(absl::StrCat(
          "resource ", name, " would hold MIG devices of two profiles, ", mig->mig->profile, " (",
          internal::Describe(*mig), ") and ", d.mig->profile, " (", internal::Describe(d),
          "); a MIG resource is one profile: narrow the resources.mig patterns"));
    }
  }
  if (kind.mode == Mode::kMps && !kind.per_container_limits) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind.origin, ": resource ", name, " would share MIG devices (", internal::Describe(*mig),
        ") with MPS and perContainerLimits: false; MPS with uniform limits is not supported on "
        "MIG devices (as upstream). Set sharing.mps.perContainerLimits: true (one MPS daemon per "
        "MIG device, limits per container), or share them with time-slicing"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ResourceSpec>> BuildResources(const config::Config& config,
                                                         const device::Inventory& inventory) {
  auto devices = MigStrategyDevices(config.flags.mig_strategy, inventory);
  if (!devices.ok()) return devices.status();
  std::vector<Placement> placements;
  placements.reserve(devices->size());
  for (device::Gpu& device : *devices) {
    Placement p;
    if (auto base = BaseName(config, device)) {
      p.base = std::move(*base);
      p.name = FullName(p.base);
      p.kind.origin = device.IsMig() ? "resources.mig" : "resources.gpus";
    }
    p.device = std::move(device);
    placements.push_back(std::move(p));
  }

  const config::Sharing& sharing = config.sharing;
  const config::AllocationPolicy policy = config.flags.plugin.shared_devices_allocation_policy;
  Kind time_slicing;
  time_slicing.mode = Mode::kTimeSlicing;
  time_slicing.fail_requests_greater_than_one =
      sharing.time_slicing.fail_requests_greater_than_one.value_or(false);
  time_slicing.policy = policy;
  if (auto s = ApplySharing(sharing.time_slicing, time_slicing, "sharing.timeSlicing", inventory,
                            placements);
      !s.ok()) {
    return s;
  }
  Kind mps;
  mps.mode = Mode::kMps;
  mps.per_container_limits = sharing.mps.per_container_limits;
  // Omitted: true in uniform mode (upstream); false with per-container limits,
  // where requests of several shares are the point. An explicit value is
  // honoured in both.
  mps.fail_requests_greater_than_one =
      sharing.mps.fail_requests_greater_than_one.value_or(!sharing.mps.per_container_limits);
  mps.memory_limit = sharing.mps.memory_limit;
  mps.capacity_shaping = sharing.mps.per_container_limits && sharing.mps.capacity_shaping;
  mps.policy = policy;
  if (auto s = ApplySharing(sharing.mps, mps, "sharing.mps", inventory, placements); !s.ok()) {
    return s;
  }

  // Merge by name; std::map keeps the result sorted by name.
  std::map<std::string, std::pair<Kind, std::vector<device::Gpu>>> by_name;
  for (const Placement& p : placements) {
    if (p.base.empty()) continue;
    auto [it, inserted] = by_name.try_emplace(p.name, p.kind, std::vector<device::Gpu>{});
    const Kind& have = it->second.first;
    if (!inserted && !have.SameAs(p.kind)) {
      std::string hint;
      if (have.mode == Mode::kExclusive || p.kind.mode == Mode::kExclusive) {
        hint =
            "; the GPUs left unshared keep that name, so give the shared ones "
            "another with "
            "rename or renameByDefault";
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "resource ", p.name, " would be both ", have.Summary(), " (", have.origin, ") and ",
          p.kind.Summary(), " (", p.kind.origin, ", ", internal::Describe(p.device), ")", hint));
    }
    it->second.second.push_back(p.device);
  }

  std::vector<ResourceSpec> out;
  for (auto& [name, entry] : by_name) {
    auto& [kind, gpus] = entry;
    std::stable_sort(gpus.begin(), gpus.end(), internal::DeviceBefore);
    if (auto s = CheckMigResource(name, kind, gpus); !s.ok()) return s;
    // Uniform MPS: every replica is one MPS client, and pre-Volta GPUs serve only 16 (validation
    // checked the 48 of newer ones without the inventory).
    if (kind.mode == Mode::kMps && !kind.per_container_limits &&
        kind.replicas > config::kMaxMpsClientsPreVolta) {
      for (const device::Gpu& gpu : gpus) {
        if (gpu.cc_major > 0 && gpu.cc_major < 7) {
          return absl::InvalidArgumentError(absl::StrCat(
              kind.origin, ".replicas: ", kind.replicas, ": must be at most ",
              config::kMaxMpsClientsPreVolta, " with perContainerLimits: false on ",
              internal::Describe(gpu), " (compute capability ", gpu.cc_major, ".", gpu.cc_minor,
              "): each replica is an MPS client, and MPS serves at most ",
              config::kMaxMpsClientsPreVolta, " per GPU before Volta"));
        }
      }
    }
    ResourceSpec spec;
    spec.name = name;
    spec.mode = kind.mode;
    spec.replicas = kind.replicas;
    spec.gpus = std::move(gpus);
    spec.fail_requests_greater_than_one = kind.fail_requests_greater_than_one;
    spec.per_container_limits = kind.per_container_limits;
    spec.memory_limit = kind.memory_limit;
    spec.policy = kind.policy;
    spec.capacity_shaping = kind.capacity_shaping;
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace nvdp::sharing
