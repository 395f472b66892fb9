// Registration with kubelet: one Register RPC over kubelet.sock for one resource.
//
// Stateless; safe to call from any thread. The caller decides when to retry (see PluginManager).
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"

namespace nvdp::kubelet {

inline constexpr char kApiVersion[] = "v1beta1";
inline constexpr char kDefaultKubeletSocket[] = "/var/lib/kubelet/device-plugins/kubelet.sock";

struct Registration {
  std::string endpoint;       // our socket's file name, relative to the device-plugin dir
  std::string resource_name;  // e.g. "nvidia.com/gpu"
};

// Sends Register(version v1beta1, endpoint, resource name, options with
// get_preferred_allocation_available) to the kubelet at `kubelet_socket`. Fails with Unavailable
// when kubelet cannot be reached within `timeout`, or with kubelet's own error.
absl::Status Register(const std::string& kubelet_socket, const Registration& registration,
                      std::chrono::milliseconds timeout);

}  // namespace nvdp::kubelet
