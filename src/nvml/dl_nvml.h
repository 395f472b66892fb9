// DlNvml: the real `Nvml`, backed by libnvidia-ml.so.1 loaded with dlopen.
//
// The only code in the project that knows NVML's C ABI (declared in nvml_abi.h,
// with static_asserts on struct sizes). Versioned
// symbols are resolved by name (`nvmlInit_v2`, `nvmlDeviceGetCount_v2`,
// `nvmlDeviceGetHandleByIndex_v2`, `nvmlDeviceGetPciInfo_v3`,
// `nvmlEventSetWait_v2`, ...); optional ones may be missing.
//
// MIG: MigDevices enumerates the MIG devices of a MIG-enabled GPU as go-nvlib does (slots up to
// nvmlDeviceGetMaxMigDeviceCount, empty ones skipped; profile names from the GI/CI profiles). The
// MIG symbols are optional: without nvmlDeviceGetMigMode there is no MIG; with MIG enabled but
// other MIG symbols missing, MigDevices fails naming them.
//
// Events: WatchEvents replaces any previous event set; it masks the requested
// types with what each GPU supports (a GPU supporting none of them, or
// NOT_SUPPORTED from registration, is logged and skipped); any other error
// frees the set and is returned, so nothing is watched.
//
// Thread-safety: all methods may be called concurrently (NVML is thread-safe);
// the event set is guarded internally. A WatchEvents while another thread blocks
// in WaitForEvent does not wait for it: the new set is used by later waits, and the
// old one is freed when its wait returns. The destructor waits for blocked waits to
// return; keep wait timeouts short (upstream uses 5 s).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nvml/nvml.h"

namespace nvdp::nvml {

// Where to look for libnvidia-ml.so.1, in order, as upstream does: the usual library directories
// under the driver root as the plugin's container sees it (--driver-root-ctr-path, default
// /driver-root; "/" on a host), then the bare soname for the dynamic loader.
std::vector<std::string> NvmlLibraryCandidates(const std::string& container_driver_root);

class DlNvml;

// go-nvlib's MIG profile name for a MIG device: "<G>g.<GB>gb" when the compute instance spans the
// whole GPU instance, else "<C>c.<G>g.<GB>gb", then a suffix ("+me" for the media-extension
// profiles, "+me.all", "+gfx", "-me"). G and C are the slices implied by the GPU- and
// compute-instance profile *indices* (NVML_GPU_INSTANCE_PROFILE_*,
// NVML_COMPUTE_INSTANCE_PROFILE_*); GB is memory_mib as a fraction of the parent's total, rounded
// up to eighths, times the parent's memory in GiB rounded up, rounded to the nearest integer.
// InvalidArgument for an index go-nvlib does not know, or a parent total of 0.
absl::StatusOr<std::string> MigProfileName(unsigned gi_profile_index, unsigned ci_profile_index,
                                           uint64_t memory_mib, uint64_t parent_total_bytes);

// Loads the first candidate that dlopens and has every required symbol. The
// error names each path tried and why it failed.
absl::StatusOr<std::unique_ptr<Nvml>> LoadNvml(const std::vector<std::string>& candidates);

}  // namespace nvdp::nvml
