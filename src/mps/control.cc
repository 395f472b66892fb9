#include "mps/control.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nvdp::mps {

ResourcePaths PathsFor(const std::string& mps_root, const std::string& resource) {
  ResourcePaths paths;
  paths.dir = absl::StrCat(mps_root, "/", resource);
  paths.pipe_dir = paths.dir + "/pipe";
  paths.log_dir = paths.dir + "/log";
  paths.started_marker = paths.dir + "/.started";
  return paths;
}

std::string ReadyMarker(const std::string& mps_root) { return mps_root + "/.ready"; }

std::string ShmDir(const std::string& mps_root) { return mps_root + "/shm"; }

std::vector<std::string> ControlEnvironment(const ControlTarget& target,
                                            const std::string& visible_devices) {
  std::vector<std::string> env;
  for (const std::string& entry : target.base_env) {
    if (absl::StartsWith(entry, "CUDA_MPS_PIPE_DIRECTORY=") ||
        absl::StartsWith(entry, "CUDA_MPS_LOG_DIRECTORY=") ||
        absl::StartsWith(entry, "CUDA_VISIBLE_DEVICES=")) {
      continue;
    }
    env.push_back(entry);
  }
  env.push_back("CUDA_MPS_PIPE_DIRECTORY=" + target.pipe_dir);
  env.push_back("CUDA_MPS_LOG_DIRECTORY=" + target.log_dir);
  if (!visible_devices.empty()) env.push_back("CUDA_VISIBLE_DEVICES=" + visible_devices);
  return env;
}

absl::StatusOr<std::string> RunControlCommand(ProcessRunner& runner, const ControlTarget& target,
                                              const std::string& command, absl::Duration timeout,
                                              absl::Duration kill_grace) {
  CommandSpec spec;
  spec.program = target.control_binary;
  spec.env = ControlEnvironment(target);
  spec.stdin_text = command + "\n";
  spec.timeout = timeout;
  spec.kill_grace = kill_grace;
  absl::StatusOr<CommandResult> result = runner.Run(spec);
  const std::string what =
      absl::StrCat("`", command, "` to the MPS control daemon at ", target.pipe_dir);
  if (!result.ok()) {
    if (absl::IsDeadlineExceeded(result.status())) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": no answer within ", absl::FormatDuration(timeout),
                       " (daemon hung?); ", result.status().message()));
    }
    return absl::Status(
        result.status().code(),
        absl::StrCat(what, ": cannot run the control client: ", result.status().message()));
  }
  if (!result->status.Success()) {
    std::string output = result->OutputForMessage();
    return absl::UnavailableError(absl::StrCat(what, " failed (", result->status.ToString(), ")",
                                               output.empty() ? "" : ": ", output));
  }
  return std::move(result->out);
}

}  // namespace nvdp::mps
