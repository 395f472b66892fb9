#include "device/inventory.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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

// `root` joined with an absolute `path` ("/" + "/proc/x" is "/proc/x").
std::string UnderRoot(const std::string& root, const std::string& path) {
  std::string joined = root;
  while (!joined.empty() && joined.back() == '/') joined.pop_back();
  return joined + path;
}

// The driver's table of capability device minors (<root>/proc/driver/nvidia-caps/mig-minors):
// lines "<capability> <minor>", e.g. "gpu0/gi1/access 12", "gpu0/gi1/ci0/access 13".
class MigMinors {
 public:
  static absl::StatusOr<MigMinors> Read(const std::string& driver_root) {
    const std::string path = UnderRoot(driver_root, "/proc/driver/nvidia-caps/mig-minors");
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    MigMinors minors;
    minors.path_ = path;
    std::string name;
    int minor = 0;
    while (in >> name >> minor) minors.minors_[name] = minor;
    return minors;
  }

  // "/dev/nvidia-caps/nvidia-cap<N>" for a capability (its `access` file path relative to
  // capabilities/), which must also exist under <root>/proc/driver/nvidia/capabilities.
  absl::StatusOr<std::string> DevicePath(const std::string& driver_root,
                                         const std::string& capability) const {
    const std::string proc_file =
        UnderRoot(driver_root, "/proc/driver/nvidia/capabilities/" + capability);
    if (!std::ifstream(proc_file)) {
      return absl::NotFoundError(absl::StrCat("cannot read ", proc_file));
    }
    // The minors table names "gpu0/gi1/access" where the proc tree has "gpu0/mig/gi1/access".
    std::string key = capability;
    if (auto at = key.find("/mig/"); at != std::string::npos) key.erase(at, 4);
    auto it = minors_.find(key);
    if (it == minors_.end()) {
      return absl::NotFoundError(absl::StrCat("no \"", key, "\" in ", path_));
    }
    return absl::StrCat("/dev/nvidia-caps/nvidia-cap", it->second);
  }

 private:
  std::string path_;
  std::map<std::string, int> minors_;
};

// Fills `mig.cap_device_paths`, or `mig.cap_error` when they cannot be resolved.
void ResolveMigCaps(const absl::StatusOr<MigMinors>& minors, const std::string& driver_root,
                    unsigned parent_minor, MigInfo& mig) {
  if (!minors.ok()) {
    mig.cap_error = std::string(minors.status().message());
    return;
  }
  const std::string gi = absl::StrCat("gpu", parent_minor, "/mig/gi", mig.gi_id);
  for (const std::string& capability :
       {absl::StrCat(gi, "/access"), absl::StrCat(gi, "/ci", mig.ci_id, "/access")}) {
    auto path = minors->DevicePath(driver_root, capability);
    if (!path.ok()) {
      mig.cap_device_paths.clear();
      mig.cap_error = std::string(path.status().message());
      return;
    }
    mig.cap_device_paths.push_back(*std::move(path));
  }
}

// A MIG device as the inventory holds it: the parent's identity and place, its own UUID, memory
// and MIG attributes.
Gpu MigDevice(const Gpu& parent, const nvml::MigDeviceInfo& info) {
  Gpu device = parent;
  device.uuid = info.uuid;
  device.memory_bytes = info.memory_bytes;
  device.mig_enabled = false;
  device.mig = MigInfo{
      .parent_uuid = parent.uuid,
      .parent_index = parent.index,
      .mig_index = info.mig_index,
      .gi_id = info.gi_id,
      .ci_id = info.ci_id,
      .profile = info.profile,
      .multiprocessor_count = info.multiprocessor_count,
      .gi_slice_count = info.gi_slice_count,
      .ci_slice_count = info.ci_slice_count,
      .shared_copy_engines = info.shared_copy_engines,
      .shared_decoders = info.shared_decoders,
      .shared_encoders = info.shared_encoders,
      .shared_jpegs = info.shared_jpegs,
      .shared_ofas = info.shared_ofas,
  };
  return device;
}

}  // namespace

absl::StatusOr<Inventory> DiscoverInventory(nvml::Nvml& nvml, const DiscoveryPaths& paths) {
  const std::string& sysfs_root = paths.sysfs_root;
  std::optional<absl::StatusOr<MigMinors>> mig_minors;  // read at the first MIG device
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
    if (gpu.mig_enabled) {
      auto migs = nvml.MigDevices(i);
      if (!migs.ok()) {
        return absl::Status(migs.status().code(),
                            absl::StrCat("GPU ", gpu.index, " (", gpu.uuid,
                                         "): MIG is enabled but its MIG devices cannot be read: ",
                                         migs.status().message()));
      }
      if (migs->empty()) {
        inventory.warnings.push_back(absl::StrCat("GPU ", gpu.index, " (", gpu.uuid,
                                                  "): MIG is enabled but no MIG device exists"));
      }
      for (const nvml::MigDeviceInfo& mig : *migs) {
        if (!mig_minors) mig_minors = MigMinors::Read(paths.driver_root);
        Gpu device = MigDevice(gpu, mig);
        ResolveMigCaps(*mig_minors, paths.driver_root, gpu.minor, *device.mig);
        inventory.mig_devices.push_back(std::move(device));
      }
    }
    inventory.gpus.push_back(std::move(gpu));
  }
  return inventory;
}

}  // namespace nvdp::device
