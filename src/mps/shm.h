// The `mount-shm` step: a tmpfs at <mpsRoot>/shm that the MPS daemon and every
// MPS client container share as /dev/shm (without it clients fail with "all
// CUDA-capable devices are busy"). Size: half of MemTotal from /proc/meminfo,
// or 65536k when that cannot be read (upstream's rule).
//
// Stateless functions; MountShm changes the mount table (needs CAP_SYS_ADMIN).
// Safe to call concurrently, though mounting twice at once is pointless.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace nvdp::mps {

// The tmpfs size, in mount(8)'s form ("<N>k"), from the text of /proc/meminfo.
std::string ShmSize(const std::string& meminfo_text);

// mount(2)'s signature; returns 0 or -1 with errno set.
using MountFunction = std::function<int(const char* source, const char* target, const char* fstype,
                                        unsigned long flags, const void* data)>;

struct ShmMount {
  std::string path;              // <mpsRoot>/shm
  std::string size;              // "<N>k"
  bool already_mounted = false;  // a tmpfs was there already; nothing was changed
};

// Creates <mpsRoot>/shm (0755) and mounts a tmpfs there (nosuid,nodev, mode
// 1777) unless a tmpfs is already mounted at that path (per `mountinfo_path`).
// EPERM/EACCES give PermissionDenied with "mount-shm needs CAP_SYS_ADMIN (run
// the daemon privileged)".
absl::StatusOr<ShmMount> MountShm(const std::string& mps_root,
                                  const std::string& meminfo_path = "/proc/meminfo",
                                  const std::string& mountinfo_path = "/proc/self/mountinfo",
                                  MountFunction mount_fn = nullptr);

}  // namespace nvdp::mps
