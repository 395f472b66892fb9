// Where an MPS resource's daemon lives on disk, and how to talk to it.
//
// Layout under the MPS root (exactly the upstream plugin's, so its daemon
// DaemonSet and ours are interchangeable), keyed by the FULL resource name:
//   <mpsRoot>/<resource>/pipe      CUDA_MPS_PIPE_DIRECTORY (0755: clients of any
//                                  UID must reach the sockets the daemon
//                                  creates there; only root may create)
//   <mpsRoot>/<resource>/log       CUDA_MPS_LOG_DIRECTORY (0755; control.log,
//                                  server.log)
//   <mpsRoot>/<resource>/.started  the resource's daemon is up and configured
//   <mpsRoot>/.ready               every resource's daemon is up and configured
//   <mpsRoot>/shm                  the tmpfs shared as /dev/shm by the daemon
//                                  and its clients
// `<resource>` is the full resource name, e.g. "nvidia.com/gpu", so the pipe
// directory of nvidia.com/gpu is <mpsRoot>/nvidia.com/gpu/pipe.
//
// Talking to a daemon = running the control client (`nvidia-cuda-mps-control`
// without arguments) with the daemon's pipe and log directories in its
// environment, one command on stdin; exit status 0 means the daemon answered
// and accepted the command.
//
// Pure functions plus RunControlCommand, which only uses the ProcessRunner it
// is given; all are safe to call concurrently.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mps/process.h"

namespace nvdp::mps {

inline constexpr char kDefaultControlBinary[] = "nvidia-cuda-mps-control";
// The command used as readiness and liveness probe (the upstream plugin's too).
inline constexpr char kProbeCommand[] = "get_default_active_thread_percentage";

struct ResourcePaths {
  std::string dir;             // <mpsRoot>/<resource>
  std::string pipe_dir;        // <mpsRoot>/<resource>/pipe
  std::string log_dir;         // <mpsRoot>/<resource>/log
  std::string started_marker;  // <mpsRoot>/<resource>/.started
};
// `resource` is the full resource name ("nvidia.com/gpu").
ResourcePaths PathsFor(const std::string& mps_root, const std::string& resource);
std::string ReadyMarker(const std::string& mps_root);  // <mpsRoot>/.ready
std::string ShmDir(const std::string& mps_root);       // <mpsRoot>/shm

// One daemon's control channel.
struct ControlTarget {
  std::string control_binary = kDefaultControlBinary;  // path, or name searched in PATH
  std::string pipe_dir;
  std::string log_dir;
  std::vector<std::string> base_env;  // e.g. InheritedEnvironment(); CUDA_MPS_* are replaced
};

// `base_env` without CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY /
// CUDA_VISIBLE_DEVICES, then the pipe and log directories (and
// CUDA_VISIBLE_DEVICES when `visible_devices` is non-empty).
std::vector<std::string> ControlEnvironment(const ControlTarget& target,
                                            const std::string& visible_devices = "");

// Sends one command through the control client. Returns the client's stdout on
// success. Errors carry the command and what went wrong: the client binary
// missing (NotFound), no answer within `timeout` (DeadlineExceeded; the client
// was killed), or a non-zero exit (Unavailable, with the client's output).
absl::StatusOr<std::string> RunControlCommand(ProcessRunner& runner, const ControlTarget& target,
                                              const std::string& command, absl::Duration timeout,
                                              absl::Duration kill_grace = absl::Seconds(1));

}  // namespace nvdp::mps
