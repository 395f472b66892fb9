#include "mpsd/daemon_specs.h"

#include <string>
#include <utility>

namespace nvdp::mpsd {

namespace {

mps::DaemonSpec Spec(const sharing::ResourceSpec& resource, std::string name,
                     const std::vector<device::Gpu>& gpus) {
  mps::DaemonSpec spec;
  spec.name = std::move(name);
  for (const device::Gpu& gpu : gpus) {
    spec.gpus.push_back(mps::DaemonGpu{gpu.uuid, gpu.index, gpu.memory_bytes});
  }
  spec.replicas = resource.replicas;
  spec.per_container_limits = resource.per_container_limits;
  spec.uniform_memory_limit = resource.memory_limit != config::MemoryLimit::kNone;
  return spec;
}

}  // namespace

std::vector<mps::DaemonSpec> ToDaemonSpecs(const sharing::ResourceSpec& resource) {
  std::vector<mps::DaemonSpec> specs;
  const bool mig = !resource.gpus.empty() && resource.gpus.front().IsMig();
  if (!mig) {
    specs.push_back(Spec(resource, resource.name, resource.gpus));
    return specs;
  }
  for (const device::Gpu& device : resource.gpus) {
    specs.push_back(Spec(resource, sharing::MpsDaemonKey(resource, device), {device}));
  }
  return specs;
}

std::vector<mps::DaemonSpec> MpsDaemonSpecs(const std::vector<sharing::ResourceSpec>& resources) {
  std::vector<mps::DaemonSpec> specs;
  for (const sharing::ResourceSpec& resource : resources) {
    if (resource.mode != sharing::Mode::kMps) continue;
    for (auto& spec : ToDaemonSpecs(resource)) specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace nvdp::mpsd
