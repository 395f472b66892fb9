#include "device/inventory.h"

#include <algorithm>
#include <cctype>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharing/sharing.h"

namespace nvdp::device {

const Gpu* Inventory::FindByUuid(const std::string& uuid) const {
  auto it = std::find_if(gpus.begin(), gpus.end(), [&](const Gpu& g) { return g.uuid == uuid; });
  return it == gpus.end() ? nullptr : &*it;
}

const Gpu* Inventory::FindByIndex(unsigned index) const {
  auto it = std::find_if(gpus.begin(), gpus.end(), [&](const Gpu& g) { return g.index == index; });
  return it == gpus.end() ? nullptr : &*it;
}

std::string NvmlBusIdToSysfs(const std::string& nvml_bus_id) {
  std::string id = nvml_bus_id;
  std::transform(id.begin(), id.end(), id.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // An 8-digit domain whose first four digits are zero: sysfs uses the short form.
  if (id.size() > 9 && id.compare(0, 4, "0000") == 0 && id[8] == ':') id.erase(0, 4);
  return id;
}

namespace {

std::optional<int> ReadNumaNode(const std::string& sysfs_root, const std::string& bus_id) {
  std::ifstream in(absl::StrCat(sysfs_root, "/bus/pci/devices/", bus_id, "/numa_node"));
  int node = -1;
  if (!(in >> node) || node < 0) return std::nullopt;
  return node;
}

}  // namespace

absl::StatusOr<Inventory> DiscoverInventory(nvml::Nvml& nvml, const std::string& sysfs_root) {
  Inventory inventory;
  auto version = nvml.DriverVersion();
  if (!version.ok()) return version.status();
  inventory.driver_version = *version;

  auto count = nvml.GpuCount();
  if (!count.ok()) return count.status();
  for (unsigned i = 0; i < *count; ++i) {
    auto info = nvml.GpuByIndex(i);
    if (!info.ok()) {
      return absl::Status(info.status().code(),
                          absl::StrCat("GPU ", i, ": ", info.status().message()));
    }
    Gpu gpu;
    gpu.uuid = info->uuid;
    gpu.index = info->index;
    gpu.minor = info->minor;
    gpu.name = info->name;
    gpu.memory_bytes = info->memory_bytes;
    gpu.cc_major = info->cc_major;
    gpu.cc_minor = info->cc_minor;
    gpu.pci_bus_id = NvmlBusIdToSysfs(info->pci_bus_id);
    gpu.numa_node = ReadNumaNode(sysfs_root, gpu.pci_bus_id);
    gpu.mig_enabled = info->mig_enabled;
    if (!info->memory_error.empty()) {
      inventory.warnings.push_back(
          absl::StrCat("GPU ", gpu.index, " (", gpu.uuid, "): cannot read its memory size (",
                       info->memory_error, "); MPS memory limits are left out for it"));
    }
    inventory.gpus.push_back(std::move(gpu));
  }
  return inventory;
}

absl::Status CheckMigStrategySupported(config::MigStrategy strategy, const Inventory& inventory) {
  return sharing::CheckMigStrategy(strategy, inventory);
}

}  // namespace nvdp::device
