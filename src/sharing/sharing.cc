// PLACEHOLDER: exclusive (whole-GPU) resources only; the sharing helper replaces this file.
#include "sharing/sharing.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nvdp::sharing {

std::string ResourceSpec::ShortName() const {
  std::string_view prefix = config::kResourcePrefix;
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

std::string FormatShareId(const std::string& gpu_uuid, int replica) {
  return absl::StrCat(gpu_uuid, "::", replica);
}

absl::StatusOr<ShareId> ParseShareId(const std::string& id) {
  auto pos = id.find("::");
  if (pos == std::string::npos) return ShareId{id, std::nullopt};
  int replica = 0;
  if (pos == 0 || !absl::SimpleAtoi(id.substr(pos + 2), &replica) || replica < 0) {
    return absl::InvalidArgumentError(absl::StrCat("malformed device ID \"", id, "\""));
  }
  return ShareId{id.substr(0, pos), replica};
}

std::vector<AdvertisedDevice> AdvertisedDevices(const ResourceSpec& spec) {
  std::vector<AdvertisedDevice> out;
  for (const auto& gpu : spec.gpus) {
    if (spec.mode == Mode::kExclusive) {
      out.push_back({gpu.uuid, gpu.uuid, gpu.numa_node});
    } else {
      for (int i = 0; i < spec.replicas; ++i) {
        out.push_back({FormatShareId(gpu.uuid, i), gpu.uuid, gpu.numa_node});
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const ResourceSpec& spec, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int allocation_size) {
  if (allocation_size <= 0 || static_cast<size_t>(allocation_size) > available.size()) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": cannot pick ", allocation_size,
                                                   " of ", available.size(), " available devices"));
  }
  std::vector<std::string> out = must_include;
  for (const auto& id : available) {
    if (out.size() >= static_cast<size_t>(allocation_size)) break;
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
  return out;
}

absl::StatusOr<Grant> GrantContainer(const ResourceSpec& spec,
                                     const std::vector<std::string>& device_ids) {
  if (device_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": empty allocation request"));
  }
  Grant grant;
  std::vector<std::string> unknown;
  for (const auto& id : device_ids) {
    auto it = std::find_if(spec.gpus.begin(), spec.gpus.end(),
                           [&](const device::Gpu& g) { return g.uuid == id; });
    if (it == spec.gpus.end()) {
      unknown.push_back(id);
    } else {
      grant.gpus.push_back(*it);
    }
  }
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": unknown device IDs: ",
                                                   absl::StrJoin(unknown, ", ")));
  }
  return grant;
}

absl::StatusOr<std::vector<ResourceSpec>> BuildResources(const config::Config&,
                                                         const device::Inventory& inventory) {
  if (inventory.gpus.empty()) return std::vector<ResourceSpec>{};
  ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.gpus = inventory.gpus;
  return std::vector<ResourceSpec>{spec};
}

}  // namespace nvdp::sharing
