// From the plugin's resource model to the MPS supervisor's input: one DaemonSpec per MPS resource
// of full GPUs, one per MIG device of an MPS resource of MIG devices (an MPS daemon serves one MIG
// device; docs/mig.md).
//
// Pure functions; safe to call concurrently.
#pragma once

#include <vector>

#include "mps/supervisor.h"
#include "sharing/sharing.h"

namespace nvdp::mpsd {

// The daemons of one MPS resource. Full GPUs: one daemon named by the resource's full name
// ("nvidia.com/gpu", which keys its directory under the MPS root as upstream's does), with the
// resource's GPUs in its order (the CUDA_VISIBLE_DEVICES order the daemon gets). MIG devices: one
// daemon per device, named sharing::MpsDaemonKey ("nvidia.com/mig-1g.5gb/MIG-<uuid>"), whose
// CUDA_VISIBLE_DEVICES is that MIG UUID. Replicas and limit mode are the resource's.
std::vector<mps::DaemonSpec> ToDaemonSpecs(const sharing::ResourceSpec& resource);

// ToDaemonSpecs for every resource whose mode is MPS; the others are skipped.
std::vector<mps::DaemonSpec> MpsDaemonSpecs(const std::vector<sharing::ResourceSpec>& resources);

}  // namespace nvdp::mpsd
