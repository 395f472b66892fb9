// ProcessRunner: running external programs (nvidia-cuda-mps-control,
// nvidia-smi) behind a small interface, so the MPS supervisor can be tested
// with a scripted fake and run for real with posix_spawn.
//
// Two shapes of use:
//   - Run(): a short-lived command with a full environment, some stdin text and
//   a timeout; returns
//     its exit status and output. A command that outlives its timeout is killed
//     (SIGTERM to its process group, then SIGKILL after `kill_grace`) and
//     reported as DeadlineExceeded. Run never blocks longer than about timeout
//     + 2 * kill_grace, even if the child ignores signals, leaves grandchildren
//     holding its output pipes, or sits in uninterruptible sleep.
//   - Spawn(): a long-lived child (the control daemon in foreground mode) that
//   the caller owns
//     through a ChildProcess handle: poll it, wait for it with a timeout,
//     terminate it.
//
// Children run in their own process group, with an empty signal mask and
// default signal dispositions, stdin from the given text (Run) or /dev/null
// (Spawn), and no inherited file descriptors beyond 0-2. No shell is involved:
// `program` is exec'd directly, searched in the PATH of the child's environment
// (or this process's PATH when the child's has none) when it has no '/'.
//
// Thread-safety: RealProcessRunner is stateless and safe to use from several
// threads at once. A ChildProcess is not thread-safe (one owner at a time).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nvdp::mps {

// How a child ended.
struct ExitStatus {
  int exit_code = -1;  // meaningful when signal == 0
  int signal = 0;      // the terminating signal, 0 when the child exited normally

  bool Success() const { return signal == 0 && exit_code == 0; }
  // "exit status 3" / "killed by signal 9 (Killed)".
  std::string ToString() const;
};

struct CommandSpec {
  std::string program;                           // path, or a name searched in PATH
  std::vector<std::string> args;                 // without argv[0]
  std::vector<std::string> env;                  // the child's complete environment, "KEY=VALUE"
  std::string stdin_text;                        // Run only; at most kMaxStdin bytes
  absl::Duration timeout = absl::Seconds(10);    // Run only
  absl::Duration kill_grace = absl::Seconds(2);  // SIGTERM -> SIGKILL

  static constexpr size_t kMaxStdin = 16 * 1024;

  // "nvidia-cuda-mps-control -d" (program and arguments, for messages).
  std::string CommandLine() const;
};

struct CommandResult {
  ExitStatus status;
  std::string out;  // stdout, truncated to 1 MiB
  std::string err;  // stderr, truncated to 1 MiB

  // stderr and stdout trimmed and joined, shortened for log messages.
  std::string OutputForMessage() const;
};

// A long-lived child started by ProcessRunner::Spawn. Destroying a handle whose
// child still runs terminates it (SIGTERM, then SIGKILL).
class ChildProcess {
 public:
  virtual ~ChildProcess() = default;

  virtual int pid() const = 0;

  // Non-blocking: the exit status once the child has ended (and was reaped),
  // else nullopt.
  virtual std::optional<ExitStatus> Poll() = 0;

  // Waits up to `timeout` for the child to end.
  virtual std::optional<ExitStatus> Wait(absl::Duration timeout) = 0;

  // SIGTERM to the child's process group, wait up to `grace`, then SIGKILL and
  // wait up to `grace` again. Returns the exit status, or nullopt if the child
  // could not be reaped even after SIGKILL (uninterruptible sleep); it is then
  // reaped in the background.
  virtual std::optional<ExitStatus> Terminate(absl::Duration grace) = 0;
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;

  // Runs a command to completion. Errors: NotFound / PermissionDenied when the
  // program cannot be executed; DeadlineExceeded when it outlived `timeout` (it
  // was killed; the message carries the output it had printed); InvalidArgument
  // for stdin above kMaxStdin. A non-zero exit is not an error: it is in the
  // result.
  virtual absl::StatusOr<CommandResult> Run(const CommandSpec& spec) = 0;

  // Starts a long-lived child. Its stdout and stderr are this process's (so its
  // messages reach the container log). Errors as for Run.
  virtual absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const CommandSpec& spec) = 0;
};

// The real runner (posix_spawn, poll, pidfd). Never destroyed.
ProcessRunner& RealProcessRunner();

// This process's environment without the variables that would change how an MPS
// daemon or client behaves behind our back (CUDA_MPS_*, CUDA_VISIBLE_DEVICES):
// the base environment for children.
std::vector<std::string> InheritedEnvironment();

// Resolves `program` as exec would: as is when it contains '/', else the first
// executable
// `<dir>/<program>` for dir in `path` (colon-separated). NotFound names the
// directories searched.
absl::StatusOr<std::string> ResolveProgram(const std::string& program, const std::string& path);

// Finds a driver program (nvidia-cuda-mps-control, nvidia-smi) as upstream does: under the
// container driver root (where the host's driver root is mounted, default /driver-root) in
// usr/bin, usr/sbin, bin and sbin, then in `path` (the NVIDIA container toolkit puts them in
// /usr/bin). NotFound lists every path tried.
absl::StatusOr<std::string> FindDriverProgram(const std::string& program,
                                              const std::string& container_driver_root,
                                              const std::string& path);

}  // namespace nvdp::mps
