// Finding and signalling the device plugin: the config manager runs in the plugin's pod with a
// shared process namespace, finds every process whose name matches by scanning <proc>/*/comm, and
// sends it the reload signal.
//
// The kernel keeps only the first 15 bytes of a process name in `comm`, so a longer name
// ("nvidia-device-plugin" -> "nvidia-device-p") matches when `comm` equals its first 15 bytes and
// the basename of argv[0] (from <proc>/<pid>/cmdline) equals the whole name.
//
// Thread-safety: FindProcesses is stateless; a ProcSignaler holds only its proc root and may be
// used from several threads.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nvdp::configmgr {

// The pids under `proc_root` (normally "/proc") whose process name is `name`, ascending, except
// `self` (this process). Unreadable entries (processes that exited meanwhile) are skipped.
// NotFound when `proc_root` cannot be read.
absl::StatusOr<std::vector<pid_t>> FindProcesses(const std::string& proc_root,
                                                 const std::string& name, pid_t self);

class ProcessSignaler {
 public:
  virtual ~ProcessSignaler() = default;

  // Sends `signal` to every process named `name`; returns how many were signalled (0: none
  // found). Errors when the process table cannot be read, or when every found process refused
  // the signal.
  virtual absl::StatusOr<int> SignalAll(const std::string& name, int signal) = 0;
};

// The real one: FindProcesses under `proc_root`, then kill(2).
class ProcSignaler final : public ProcessSignaler {
 public:
  explicit ProcSignaler(std::string proc_root = "/proc") : proc_root_(std::move(proc_root)) {}
  absl::StatusOr<int> SignalAll(const std::string& name, int signal) override;

 private:
  std::string proc_root_;
};

}  // namespace nvdp::configmgr
