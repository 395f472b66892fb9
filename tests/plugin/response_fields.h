// ResponseFields: a ContainerAllocateResponse as a list of lines, one per field value, for exact
// comparisons in tests with readable diffs. Map fields (envs, annotations) come sorted by key;
// repeated fields (mounts, devices, CDI devices) keep their order:
//   "annotation <key>=<value>", "cdi <name>", "device <container> <- <host> <permissions>",
//   "env <name>=<value>", "mount <host> -> <container> rw|ro".
// Header-only test helper; pure.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "deviceplugin/v1beta1/api.pb.h"

namespace nvdp::testing {

inline std::vector<std::string> ResponseFields(const v1beta1::ContainerAllocateResponse& response) {
  std::vector<std::string> lines;
  for (const auto& [key, value] : std::map<std::string, std::string>(
           response.annotations().begin(), response.annotations().end())) {
    lines.push_back("annotation " + key + "=" + value);
  }
  for (const auto& device : response.cdi_devices()) lines.push_back("cdi " + device.name());
  for (const auto& device : response.devices()) {
    lines.push_back("device " + device.container_path() + " <- " + device.host_path() + " " +
                    device.permissions());
  }
  for (const auto& [key, value] :
       std::map<std::string, std::string>(response.envs().begin(), response.envs().end())) {
    lines.push_back("env " + key + "=" + value);
  }
  for (const auto& mount : response.mounts()) {
    lines.push_back("mount " + mount.host_path() + " -> " + mount.container_path() +
                    (mount.read_only() ? " ro" : " rw"));
  }
  return lines;
}

}  // namespace nvdp::testing
