// From the plugin's resource model to the MPS supervisor's input: one
// DaemonSpec per MPS resource.
//
// Pure functions; safe to call concurrently.
#pragma once

#include <vector>

#include "mps/supervisor.h"
#include "sharing/sharing.h"

namespace nvdp::mpsd {

// The daemon for one MPS resource: its full name ("nvidia.com/gpu", which keys its
// directory under the MPS root as upstream's does), its GPUs in the resource's
// order (which is the CUDA_VISIBLE_DEVICES order the daemon gets), replicas and
// limit mode.
mps::DaemonSpec ToDaemonSpec(const sharing::ResourceSpec& resource);

// ToDaemonSpec for every resource whose mode is MPS; the others are skipped.
std::vector<mps::DaemonSpec> MpsDaemonSpecs(const std::vector<sharing::ResourceSpec>& resources);

}  // namespace nvdp::mpsd
