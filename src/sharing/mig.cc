// MIG strategies: which devices flags.migStrategy advertises on a node, and the default
// resource names of MIG profiles (docs/mig.md).
//
// Pure; safe to call concurrently.
#include <algorithm>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharing/internal.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {
namespace {

std::string StrategyName(config::MigStrategy strategy) {
  switch (strategy) {
    case config::MigStrategy::kNone:
      return "none";
    case config::MigStrategy::kSingle:
      return "single";
    case config::MigStrategy::kMixed:
      return "mixed";
  }
  return "unknown";
}

// What the single strategy compares: the profile and every attribute NVML reports for the device.
auto Attributes(const device::Gpu& d) {
  const device::MigInfo& m = *d.mig;
  return std::make_tuple(m.profile, d.memory_bytes, m.multiprocessor_count, m.gi_slice_count,
                         m.ci_slice_count, m.shared_copy_engines, m.shared_decoders,
                         m.shared_encoders, m.shared_jpegs, m.shared_ofas);
}

std::string GpuList(const std::vector<const device::Gpu*>& gpus) {
  std::vector<std::string> names;
  for (const device::Gpu* gpu : gpus) names.push_back(internal::Describe(*gpu));
  return internal::JoinAnd(names);
}

absl::Status Refuse(config::MigStrategy strategy, const std::string& why) {
  return absl::FailedPreconditionError(
      absl::StrCat("flags.migStrategy: ", StrategyName(strategy), " — ", why));
}

}  // namespace

std::optional<std::string> DefaultMixedMigResource(std::string_view profile) {
  // "<c>c.<g>g.<mem>gb": compute slices differ from GPU slices; upstream has no default name.
  const size_t dot = profile.find('.');
  if (dot != std::string_view::npos && dot > 0 && profile[dot - 1] == 'c') return std::nullopt;
  std::string name = absl::StrCat("mig-", std::string(profile));
  std::replace(name.begin(), name.end(), '+', '.');
  return name;
}

absl::StatusOr<std::vector<device::Gpu>> MigStrategyDevices(config::MigStrategy strategy,
                                                            const device::Inventory& inventory) {
  std::vector<device::Gpu> out;
  std::vector<const device::Gpu*> on, off, empty;
  for (const device::Gpu& gpu : inventory.gpus) {
    if (!gpu.mig_enabled) {
      off.push_back(&gpu);
      continue;
    }
    on.push_back(&gpu);
    const bool has_devices =
        std::any_of(inventory.mig_devices.begin(), inventory.mig_devices.end(),
                    [&](const device::Gpu& d) { return d.mig && d.mig->parent_uuid == gpu.uuid; });
    if (!has_devices) empty.push_back(&gpu);
  }
  if (strategy == config::MigStrategy::kNone || on.empty()) return inventory.gpus;

  if (!empty.empty()) {
    return Refuse(strategy, absl::StrCat("MIG is enabled on ", GpuList(empty),
                                         " but it has no MIG devices; create MIG devices on it "
                                         "(e.g. with nvidia-smi mig or mig-parted), disable MIG "
                                         "on it, or use migStrategy: none"));
  }
  if (strategy == config::MigStrategy::kSingle) {
    if (!off.empty()) {
      return Refuse(strategy,
                    absl::StrCat("every GPU must have MIG enabled, or none (as upstream): MIG is "
                                 "enabled on ",
                                 GpuList(on), " but not on ", GpuList(off),
                                 "; use migStrategy: mixed, or change the MIG mode"));
    }
    // Kinds of MIG devices, with the GPUs that have each.
    std::map<decltype(Attributes(inventory.mig_devices.front())), std::vector<std::string>> kinds;
    for (const device::Gpu& d : inventory.mig_devices) {
      auto& where = kinds[Attributes(d)];
      const std::string gpu = absl::StrCat("GPU ", d.index);
      if (where.empty() || where.back() != gpu) where.push_back(gpu);
    }
    if (kinds.size() > 1) {
      std::vector<std::string> parts;
      for (const auto& [attributes, gpus] : kinds) {
        parts.push_back(absl::StrCat(std::get<0>(attributes), " (", std::get<1>(attributes) >> 20,
                                     " MiB, ", std::get<2>(attributes), " SMs) on ",
                                     absl::StrJoin(gpus, ", ")));
      }
      return Refuse(strategy,
                    absl::StrCat("every MIG device must be alike (same profile and attributes, "
                                 "as upstream), but this node has ",
                                 absl::StrJoin(parts, "; "),
                                 "; use migStrategy: mixed, or repartition the GPUs"));
    }
    return inventory.mig_devices;
  }
  for (const device::Gpu* gpu : off) out.push_back(*gpu);
  out.insert(out.end(), inventory.mig_devices.begin(), inventory.mig_devices.end());
  return out;
}

std::string MpsDaemonKey(const ResourceSpec& spec, const device::Gpu& device) {
  return device.IsMig() ? absl::StrCat(spec.name, "/", device.uuid) : spec.name;
}

absl::Status CheckMigStrategy(config::MigStrategy strategy, const device::Inventory& inventory) {
  return MigStrategyDevices(strategy, inventory).status();
}

}  // namespace nvdp::sharing
