// DlNvml: the real `Nvml`, backed by libnvidia-ml.so.1 loaded with dlopen.
//
// The only code in the project that knows NVML's C ABI (declared in nvml_abi.h,
// with static_asserts on struct sizes). Versioned
// symbols are resolved by name (`nvmlInit_v2`, `nvmlDeviceGetCount_v2`,
// `nvmlDeviceGetHandleByIndex_v2`, `nvmlDeviceGetPciInfo_v3`,
// `nvmlEventSetWait_v2`, ...); optional ones may be missing.
//
// Events: WatchEvents replaces any previous event set; it masks the requested
// types with what each GPU supports (a GPU supporting none of them, or
// NOT_SUPPORTED from registration, is logged and skipped); any other error
// frees the set and is returned, so nothing is watched.
//
// Thread-safety: all methods may be called concurrently (NVML is thread-safe);
// the event set is guarded internally. WaitForEvent holds that guard while it
// blocks, so a concurrent WatchEvents (or the destructor) waits for it to
// return; keep wait timeouts short (upstream uses 5 s).
#pragma once

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

// Loads the first candidate that dlopens and has every required symbol. The
// error names each path tried and why it failed.
absl::StatusOr<std::unique_ptr<Nvml>> LoadNvml(const std::vector<std::string>& candidates);

}  // namespace nvdp::nvml
