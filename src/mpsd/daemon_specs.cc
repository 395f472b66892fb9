#include "mpsd/daemon_specs.h"

namespace nvdp::mpsd {

mps::DaemonSpec ToDaemonSpec(const sharing::ResourceSpec& resource) {
  mps::DaemonSpec spec;
  spec.name = resource.name;
  for (const device::Gpu& gpu : resource.gpus) {
    spec.gpus.push_back(mps::DaemonGpu{gpu.uuid, gpu.index, gpu.memory_bytes});
  }
  spec.replicas = resource.replicas;
  spec.per_container_limits = resource.per_container_limits;
  spec.uniform_memory_limit = resource.memory_limit != config::MemoryLimit::kNone;
  return spec;
}

std::vector<mps::DaemonSpec> MpsDaemonSpecs(const std::vector<sharing::ResourceSpec>& resources) {
  std::vector<mps::DaemonSpec> specs;
  for (const sharing::ResourceSpec& resource : resources) {
    if (resource.mode == sharing::Mode::kMps) specs.push_back(ToDaemonSpec(resource));
  }
  return specs;
}

}  // namespace nvdp::mpsd
