// nvdp-inventory: prints the GPU inventory the plugin would discover, as JSON,
// so it can be compared with `nvidia-smi --query-gpu` on a real machine
// (scripts/gpu-check.sh).
//
//   nvdp-inventory [--nvidia-driver-root /] [--nvml-library PATH] [--sysfs-root
//   /sys]
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "device/inventory.h"
#include "nlohmann/json.hpp"
#include "nvml/dl_nvml.h"

int main(int argc, char** argv) {
  CLI::App cli{"Print the discovered GPU inventory as JSON"};
  std::string driver_root = "/";
  std::string nvml_library;
  std::string sysfs_root = "/sys";
  cli.add_option("--nvidia-driver-root", driver_root, "where the driver's libraries live")
      ->envname("NVIDIA_DRIVER_ROOT");
  cli.add_option("--nvml-library", nvml_library, "libnvidia-ml.so.1 to load (default: search)")
      ->envname("NVML_LIBRARY");
  cli.add_option("--sysfs-root", sysfs_root, "sysfs mount (for NUMA nodes)");
  CLI11_PARSE(cli, argc, argv);

  const std::vector<std::string> candidates = nvml_library.empty()
                                                  ? nvdp::nvml::NvmlLibraryCandidates(driver_root)
                                                  : std::vector<std::string>{nvml_library};
  auto nvml = nvdp::nvml::LoadNvml(candidates);
  if (!nvml.ok()) {
    std::fprintf(stderr, "cannot load NVML: %s\n", std::string(nvml.status().message()).c_str());
    return 1;
  }
  if (auto status = (*nvml)->Init(); !status.ok()) {
    std::fprintf(stderr, "NVML init failed: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  auto inventory = nvdp::device::DiscoverInventory(**nvml, {.sysfs_root = sysfs_root});
  (*nvml)->Shutdown().IgnoreError();
  if (!inventory.ok()) {
    std::fprintf(stderr, "discovery failed: %s\n",
                 std::string(inventory.status().message()).c_str());
    return 1;
  }
  nlohmann::json out;
  out["driver_version"] = inventory->driver_version;
  out["gpus"] = nlohmann::json::array();
  for (const nvdp::device::Gpu& gpu : inventory->gpus) {
    nlohmann::json g;
    g["uuid"] = gpu.uuid;
    g["index"] = gpu.index;
    g["minor"] = gpu.minor;
    g["name"] = gpu.name;
    g["memory_bytes"] = gpu.memory_bytes;
    g["memory_mib"] = gpu.memory_bytes / (1024 * 1024);
    g["cc"] = std::to_string(gpu.cc_major) + "." + std::to_string(gpu.cc_minor);
    g["pci_bus_id"] = gpu.pci_bus_id;
    g["numa_node"] = gpu.numa_node.has_value() ? nlohmann::json(*gpu.numa_node) : nlohmann::json();
    out["gpus"].push_back(g);
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
