#include "mps/supervisor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace nvdp::mps {
namespace {

std::string Fmt(absl::Duration d) { return absl::FormatDuration(d); }

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// mkdir -p, then chmod the last component to `mode` (mkdir's mode is filtered
// by the umask).
absl::Status MakeDir(const std::string& path, mode_t mode) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory", prefix);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoError("cannot stat", path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  if ((st.st_mode & 07777) != mode && chmod(path.c_str(), mode) != 0) {
    return ErrnoError("cannot chmod", path);
  }
  return absl::OkStatus();
}

absl::Status Touch(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", path);
  close(fd);
  return absl::OkStatus();
}

void RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove {}: {}", path, std::strerror(errno));
  }
}

std::string GpuList(const DaemonSpec& spec) {
  std::vector<std::string> uuids;
  for (const DaemonGpu& gpu : spec.gpus) uuids.push_back(gpu.uuid);
  return absl::StrJoin(uuids, ",");
}

// A daemon name: a full resource name "<domain>/<name>", or "<domain>/<name>/MIG-<uuid>" for a
// MIG device's own daemon (sharing::MpsDaemonKey), whose directory <mpsRoot>/<name> stays inside
// the root and clear of shm, the markers and the resource's own pipe/log: two parts, or three
// with a "MIG-" third, none empty or starting with '.', the domain not "shm".
bool ValidResourceName(const std::string& name) {
  const std::vector<std::string> parts = absl::StrSplit(name, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts.front() == "shm") return false;
  if (parts.size() == 3 && !absl::StartsWith(parts[2], "MIG-")) return false;
  return std::all_of(parts.begin(), parts.end(),
                     [](const std::string& p) { return !p.empty() && p[0] != '.'; });
}

absl::Status ValidateSpecs(const std::vector<DaemonSpec>& specs, const SupervisorOptions& options) {
  std::vector<std::string> problems;
  if (options.mps_root.empty() || options.mps_root[0] != '/') {
    problems.push_back(absl::StrCat("the MPS root must be an absolute path (got \"",
                                    options.mps_root, "\"); set --mps-root / flags.mpsRoot"));
  }
  std::set<std::string> names;
  for (const DaemonSpec& spec : specs) {
    if (!ValidResourceName(spec.name)) {
      problems.push_back(absl::StrCat(
          "invalid MPS resource name \"", spec.name,
          "\" (need <domain>/<name>, e.g. nvidia.com/gpu, or <domain>/<name>/MIG-<uuid>)"));
    }
    if (!names.insert(spec.name).second) {
      problems.push_back(absl::StrCat("MPS resource \"", spec.name, "\" listed twice"));
    }
    if (spec.gpus.empty()) {
      problems.push_back(absl::StrCat("MPS resource \"", spec.name, "\" has no GPUs"));
    }
    if (spec.replicas < 1) {
      problems.push_back(absl::StrCat("MPS resource \"", spec.name, "\" has ", spec.replicas,
                                      " replicas; need at least 1"));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
}

}  // namespace

struct Supervisor::Daemon {
  DaemonSpec spec;
  ResourcePaths paths;
  ControlTarget target;
  std::vector<std::string> env;  // the daemon's own environment
  DaemonStatus status;
  bool launched = false;  // launched and not shut down since
  std::unique_ptr<ChildProcess> child;
  absl::Time up_since = absl::InfinitePast();
  absl::Time next_probe = absl::InfinitePast();
  std::vector<std::string> compute_mode_set;  // UUIDs we set to EXCLUSIVE_PROCESS
};

std::vector<std::string> ConfigureCommands(const DaemonSpec& spec) {
  std::vector<std::string> commands;
  if (spec.per_container_limits) {
    // No daemon-wide cap: each container's CUDA_MPS_* env can only lower it, so
    // it must be 100.
    commands.push_back("set_default_active_thread_percentage 100");
    return commands;
  }
  const uint64_t replicas = static_cast<uint64_t>(std::max(1, spec.replicas));
  if (spec.uniform_memory_limit) {
    for (size_t ordinal = 0; ordinal < spec.gpus.size(); ++ordinal) {
      // A GPU whose memory size is unknown gets no limit rather than 0 MiB.
      if (spec.gpus[ordinal].memory_bytes == 0) continue;
      // Upstream's arithmetic: bytes / replicas, then to MiB (rounding down).
      const uint64_t mib = spec.gpus[ordinal].memory_bytes / replicas / 1024 / 1024;
      commands.push_back(
          absl::StrCat("set_default_device_pinned_mem_limit ", ordinal, " ", mib, "M"));
    }
  }
  commands.push_back(
      absl::StrCat("set_default_active_thread_percentage ", std::max<uint64_t>(1, 100 / replicas)));
  return commands;
}

const char* DaemonStateName(DaemonState state) {
  switch (state) {
    case DaemonState::kStopped:
      return "stopped";
    case DaemonState::kUp:
      return "up";
    case DaemonState::kDown:
      return "down";
  }
  return "?";
}

Supervisor::Supervisor(std::vector<DaemonSpec> specs, SupervisorOptions options,
                       ProcessRunner& runner, Clock& clock)
    : options_(std::move(options)), runner_(runner), clock_(clock) {
  absl::MutexLock lock(&work_mu_);
  for (DaemonSpec& spec : specs) daemons_.push_back(MakeDaemon(std::move(spec)));
  Publish();
}

std::unique_ptr<Supervisor::Daemon> Supervisor::MakeDaemon(DaemonSpec spec) const {
  auto d = std::make_unique<Daemon>();
  d->paths = PathsFor(options_.mps_root, spec.name);
  d->target.control_binary = options_.control_binary;
  d->target.pipe_dir = d->paths.pipe_dir;
  d->target.log_dir = d->paths.log_dir;
  d->target.base_env = options_.base_env;
  d->env = ControlEnvironment(d->target, GpuList(spec));
  d->status.name = spec.name;
  d->spec = std::move(spec);
  return d;
}

Supervisor::~Supervisor() {
  absl::Status status = StopAll();
  if (!status.ok())
    spdlog::error("stopping MPS control daemons: {}", std::string(status.message()));
}

absl::Status Supervisor::StartAll() {
  absl::MutexLock lock(&work_mu_);
  std::vector<DaemonSpec> specs;
  for (const auto& d : daemons_) specs.push_back(d->spec);
  if (absl::Status s = ValidateSpecs(specs, options_); !s.ok()) return s;
  if (daemons_.empty()) {
    spdlog::info("no MPS resources configured; nothing to start");
  }
  started_ = true;
  // Markers from an earlier run say nothing about the daemons we are about to
  // start.
  RemoveFile(ReadyMarker(options_.mps_root));
  ready_marker_ = false;
  for (const auto& d : daemons_) RemoveFile(d->paths.started_marker);

  std::vector<std::string> failures;
  for (const auto& d : daemons_) {
    if (stop_requested_.HasBeenNotified()) {
      failures.push_back(absl::StrCat(d->spec.name, ": not started (stop requested)"));
      continue;
    }
    absl::Status s = StartOne(*d);
    if (!s.ok()) {
      MarkDown(*d, s);
      failures.push_back(absl::StrCat(d->spec.name, ": ", s.message()));
    }
  }
  UpdateReadyMarker();
  Publish();
  if (failures.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("MPS control daemons not started (will retry): ",
                                             absl::StrJoin(failures, "; ")));
}

absl::Status Supervisor::StartOne(Daemon& d) {
  const DaemonSpec& spec = d.spec;
  spdlog::info(
      "starting the MPS control daemon for resource '{}': GPUs {}, {} "
      "replicas, {} limits, {} "
      "mode, pipe dir {}",
      spec.name, GpuList(spec), spec.replicas,
      spec.per_container_limits ? "per-container" : "uniform",
      options_.launch_mode == LaunchMode::kForeground ? "foreground (-f)" : "background (-d)",
      d.paths.pipe_dir);
  for (const std::string* dir : {&d.paths.dir, &d.paths.pipe_dir, &d.paths.log_dir}) {
    if (absl::Status s = MakeDir(*dir, 0755); !s.ok()) return s;
  }
  if (options_.set_compute_mode) {
    if (absl::Status s = SetComputeMode(d); !s.ok()) return s;
  }
  if (absl::Status s = QuitStaleDaemon(d); !s.ok()) return s;
  if (absl::Status s = Launch(d); !s.ok()) return s;
  if (absl::Status s = AwaitReady(d); !s.ok()) {
    ShutDown(d, options_.probe_timeout).IgnoreError();
    return s;
  }
  for (const std::string& command : ConfigureCommands(spec)) {
    absl::StatusOr<std::string> answer = Control(d, command, options_.command_timeout);
    if (!answer.ok()) {
      ShutDown(d, options_.probe_timeout).IgnoreError();
      return absl::Status(answer.status().code(),
                          absl::StrCat("configuring the daemon: ", answer.status().message()));
    }
  }
  if (absl::Status s = Touch(d.paths.started_marker); !s.ok()) {
    ShutDown(d, options_.probe_timeout).IgnoreError();
    return s;
  }
  const absl::Time now = clock_.Now();
  d.status.state = DaemonState::kUp;
  d.status.starts++;
  d.up_since = now;
  d.next_probe = now + options_.liveness_period;
  spdlog::info(
      "MPS control daemon for resource '{}' is up{} and configured ({}); "
      "touched {}",
      spec.name, d.child ? absl::StrCat(" (pid ", d.child->pid(), ")") : "",
      absl::StrJoin(ConfigureCommands(spec), "; "), d.paths.started_marker);
  return absl::OkStatus();
}

absl::Status Supervisor::SetComputeMode(Daemon& d) {
  for (const DaemonGpu& gpu : d.spec.gpus) {
    // Compute mode belongs to the whole GPU and cannot be set on a MIG device; MPS on MIG does
    // not need it.
    if (absl::StartsWith(gpu.uuid, "MIG-")) continue;
    if (std::find(d.compute_mode_set.begin(), d.compute_mode_set.end(), gpu.uuid) !=
        d.compute_mode_set.end()) {
      continue;
    }
    CommandSpec cmd;
    cmd.program = options_.nvidia_smi;
    cmd.args = {"-i", gpu.uuid, "-c", "EXCLUSIVE_PROCESS"};
    cmd.env = options_.base_env;
    cmd.timeout = options_.command_timeout;
    cmd.kill_grace = options_.kill_grace;
    absl::StatusOr<CommandResult> result = runner_.Run(cmd);
    std::string problem;
    if (!result.ok()) {
      problem = std::string(result.status().message());
    } else if (!result->status.Success()) {
      problem = absl::StrCat(result->status.ToString(), ": ", result->OutputForMessage());
    }
    if (!problem.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot set compute mode EXCLUSIVE_PROCESS on GPU ", gpu.uuid, " (index ",
                       gpu.index, ") with `", cmd.CommandLine(), "`: ", problem,
                       " (the daemon needs to run privileged; --set-compute-mode=false "
                       "leaves compute mode "
                       "alone)"));
    }
    d.compute_mode_set.push_back(gpu.uuid);
    spdlog::info("GPU {} (index {}) set to compute mode EXCLUSIVE_PROCESS", gpu.uuid, gpu.index);
  }
  return absl::OkStatus();
}

absl::Status Supervisor::RestoreComputeMode(Daemon& d) {
  std::vector<std::string> problems;
  for (const std::string& uuid : d.compute_mode_set) {
    CommandSpec cmd;
    cmd.program = options_.nvidia_smi;
    cmd.args = {"-i", uuid, "-c", "DEFAULT"};
    cmd.env = options_.base_env;
    cmd.timeout = options_.command_timeout;
    cmd.kill_grace = options_.kill_grace;
    absl::StatusOr<CommandResult> result = runner_.Run(cmd);
    if (!result.ok()) {
      problems.push_back(absl::StrCat("GPU ", uuid, ": ", result.status().message()));
    } else if (!result->status.Success()) {
      problems.push_back(absl::StrCat("GPU ", uuid, ": `", cmd.CommandLine(), "` ",
                                      result->status.ToString(), ": ", result->OutputForMessage()));
    } else {
      spdlog::info("GPU {} set back to compute mode DEFAULT", uuid);
    }
  }
  d.compute_mode_set.clear();
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cannot restore compute mode DEFAULT: ", absl::StrJoin(problems, "; ")));
}

absl::Status Supervisor::QuitStaleDaemon(Daemon& d) {
  absl::StatusOr<std::string> probe = Control(d, kProbeCommand, options_.probe_timeout);
  if (absl::IsNotFound(probe.status()) || absl::IsPermissionDenied(probe.status())) {
    return probe.status();  // the control binary itself is missing: say so now
  }
  if (!probe.ok()) return absl::OkStatus();  // nothing answering: the usual case
  spdlog::warn(
      "an MPS control daemon already answers at {} (left over from an earlier "
      "run?); sending "
      "quit so that the new one starts with our settings",
      d.paths.pipe_dir);
  absl::StatusOr<std::string> quit = Control(d, "quit", options_.stop_timeout);
  if (!quit.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("an MPS control daemon left over at ", d.paths.pipe_dir,
                     " did not accept quit: ", quit.status().message()));
  }
  const absl::Time deadline = clock_.Now() + options_.stop_timeout;
  while (Control(d, kProbeCommand, options_.probe_timeout).ok()) {
    if (clock_.Now() >= deadline) {
      return absl::FailedPreconditionError(absl::StrCat(
          "an MPS control daemon left over at ", d.paths.pipe_dir, " still answers after quit"));
    }
    if (!clock_.SleepUntil(std::min(deadline, clock_.Now() + options_.ready_poll_interval),
                           &stop_requested_)) {
      return absl::CancelledError("stop requested");
    }
  }
  return absl::OkStatus();
}

absl::Status Supervisor::Launch(Daemon& d) {
  CommandSpec cmd;
  cmd.program = options_.control_binary;
  cmd.env = d.env;
  cmd.kill_grace = options_.kill_grace;
  const std::string hint = absl::StrCat("; see ", d.paths.log_dir, "/control.log");
  if (options_.launch_mode == LaunchMode::kForeground) {
    cmd.args = {"-f"};
    absl::StatusOr<std::unique_ptr<ChildProcess>> child = runner_.Spawn(cmd);
    if (!child.ok()) {
      return absl::Status(child.status().code(), absl::StrCat("cannot start `", cmd.CommandLine(),
                                                              "`: ", child.status().message()));
    }
    d.child = std::move(*child);
    d.status.pid = d.child->pid();
    d.launched = true;
    return absl::OkStatus();
  }
  cmd.args = {"-d"};
  cmd.timeout = options_.launch_timeout;
  absl::StatusOr<CommandResult> result = runner_.Run(cmd);
  if (!result.ok()) {
    if (absl::IsDeadlineExceeded(result.status())) {
      // It may have forked a daemon before hanging: try to quit it later.
      d.launched = true;
      ShutDown(d, options_.probe_timeout).IgnoreError();
    }
    return absl::Status(
        result.status().code(),
        absl::StrCat("cannot start `", cmd.CommandLine(), "`: ", result.status().message(), hint));
  }
  if (!result->status.Success()) {
    const std::string output = result->OutputForMessage();
    return absl::UnavailableError(absl::StrCat("`", cmd.CommandLine(), "` failed (",
                                               result->status.ToString(), ")",
                                               output.empty() ? "" : ": ", output, hint));
  }
  d.launched = true;
  return absl::OkStatus();
}

absl::Status Supervisor::AwaitReady(Daemon& d) {
  const absl::Time deadline = clock_.Now() + options_.ready_timeout;
  while (true) {
    if (d.child) {
      if (std::optional<ExitStatus> exit = d.child->Poll(); exit.has_value()) {
        d.child.reset();
        d.status.pid.reset();
        d.launched = false;
        return absl::UnavailableError(absl::StrCat("the MPS control daemon exited at once (",
                                                   exit->ToString(), ") before answering; see ",
                                                   d.paths.log_dir, "/control.log"));
      }
    }
    absl::StatusOr<std::string> probe = Control(d, kProbeCommand, options_.probe_timeout);
    if (probe.ok()) return absl::OkStatus();
    if (absl::IsNotFound(probe.status()) || absl::IsPermissionDenied(probe.status())) {
      return probe.status();
    }
    const absl::Time now = clock_.Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the MPS control daemon did not answer within ", Fmt(options_.ready_timeout),
                       " of starting; last probe: ", probe.status().message(), "; see ",
                       d.paths.log_dir, "/control.log"));
    }
    if (!clock_.SleepUntil(std::min(deadline, now + options_.ready_poll_interval),
                           &stop_requested_)) {
      return absl::CancelledError("stop requested while waiting for the daemon to answer");
    }
  }
}

absl::Status Supervisor::CheckChildExited(Daemon& d) {
  if (!d.child) return absl::OkStatus();
  std::optional<ExitStatus> exit = d.child->Poll();
  if (!exit.has_value()) return absl::OkStatus();
  d.child.reset();
  d.status.pid.reset();
  d.launched = false;
  return absl::UnavailableError(
      absl::StrCat("the MPS control daemon exited (", exit->ToString(), ")"));
}

absl::Status Supervisor::CheckAlive(Daemon& d) {
  if (absl::Status exited = CheckChildExited(d); !exited.ok()) return exited;
  absl::StatusOr<std::string> probe = Control(d, kProbeCommand, options_.probe_timeout);
  if (probe.ok()) return absl::OkStatus();
  return absl::Status(probe.status().code(),
                      absl::StrCat("liveness probe failed: ", probe.status().message()));
}

absl::Status Supervisor::ShutDown(Daemon& d, absl::Duration quit_timeout) {
  if (!d.launched) return absl::OkStatus();
  d.launched = false;
  std::vector<std::string> problems;
  const bool child_gone = d.child && d.child->Poll().has_value();
  absl::Status quit = absl::OkStatus();
  if (!child_gone) {
    quit = Control(d, "quit", quit_timeout).status();
    if (!quit.ok()) problems.push_back(std::string(quit.message()));
  }
  if (d.child) {
    std::optional<ExitStatus> exit = d.child->Poll();
    if (!exit.has_value() && quit.ok()) exit = d.child->Wait(options_.stop_timeout);
    if (!exit.has_value()) {
      spdlog::warn(
          "MPS control daemon for '{}' (pid {}) did not exit after quit; "
          "terminating it",
          d.spec.name, d.child->pid());
      exit = d.child->Terminate(options_.kill_grace);
    }
    if (exit.has_value()) {
      spdlog::info("MPS control daemon for '{}' (pid {}) ended: {}", d.spec.name, d.child->pid(),
                   exit->ToString());
    } else {
      problems.push_back(absl::StrCat("pid ", d.child->pid(), " survived SIGKILL"));
    }
    d.child.reset();
    d.status.pid.reset();
  } else if (!quit.ok()) {
    problems.push_back(
        "the daemon was started with -d, so its pid is unknown and it cannot "
        "be killed");
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrJoin(problems, "; "));
}

void Supervisor::MarkDown(Daemon& d, const absl::Status& why) {
  const absl::Time now = clock_.Now();
  if (d.status.state == DaemonState::kUp && now - d.up_since >= options_.backoff_reset_after) {
    d.status.consecutive_failures = 0;
  }
  const bool was_up = d.status.state == DaemonState::kUp;
  d.status.consecutive_failures++;
  d.status.failures++;
  d.status.last_error = why;
  // Markers first, so that nobody trusts the daemon while it is being cleaned
  // up.
  RemoveFile(d.paths.started_marker);
  d.status.state = DaemonState::kDown;
  UpdateReadyMarker();  // .ready goes as soon as one daemon is not up
  if (absl::Status s = ShutDown(d, options_.probe_timeout); !s.ok()) {
    spdlog::info("cleaning up after the MPS control daemon for '{}': {}", d.spec.name,
                 std::string(s.message()));
  }
  absl::Duration delay = options_.backoff_initial;
  for (int i = 1; i < d.status.consecutive_failures && delay < options_.backoff_max; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.backoff_max);
  d.status.next_attempt = now + delay;
  if (was_up) {
    spdlog::error("MPS control daemon for resource '{}' is DOWN: {}; restarting in {}", d.spec.name,
                  std::string(why.message()), Fmt(delay));
  } else {
    spdlog::error(
        "MPS control daemon for resource '{}' failed to start: {}; retrying in "
        "{} (failure {} in "
        "a row)",
        d.spec.name, std::string(why.message()), Fmt(delay), d.status.consecutive_failures);
  }
  Publish();
}

void Supervisor::UpdateReadyMarker() {
  const bool all_up =
      !daemons_.empty() && std::all_of(daemons_.begin(), daemons_.end(), [](const auto& d) {
        return d->status.state == DaemonState::kUp;
      });
  const std::string marker = ReadyMarker(options_.mps_root);
  if (all_up && !ready_marker_) {
    if (absl::Status s = Touch(marker); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return;
    }
    ready_marker_ = true;
    spdlog::info("all {} MPS control daemon(s) are up; touched {}", daemons_.size(), marker);
  } else if (!all_up && ready_marker_) {
    RemoveFile(marker);
    ready_marker_ = false;
    spdlog::warn("not every MPS control daemon is up; removed {}", marker);
  }
}

absl::Time Supervisor::Tick() {
  absl::MutexLock lock(&work_mu_);
  absl::Time now = clock_.Now();
  for (const auto& owned : daemons_) {
    if (stop_requested_.HasBeenNotified()) break;
    Daemon& d = *owned;
    if (d.status.state == DaemonState::kUp) {
      // A foreground child that exited is seen at every Tick, without waiting
      // for its probe: Wake (SIGCHLD) makes that immediate.
      absl::Status alive = CheckChildExited(d);
      if (alive.ok() && now >= d.next_probe) {
        alive = CheckAlive(d);
        now = clock_.Now();
        if (alive.ok()) d.next_probe = now + options_.liveness_period;
      }
      if (!alive.ok()) MarkDown(d, alive);
    } else if (d.status.state == DaemonState::kDown && now >= d.status.next_attempt) {
      spdlog::info(
          "restarting the MPS control daemon for resource '{}' (after {} "
          "failure(s))",
          d.spec.name, d.status.consecutive_failures);
      absl::Status started = StartOne(d);
      now = clock_.Now();
      if (started.ok()) {
        spdlog::info("MPS control daemon for resource '{}' is back up", d.spec.name);
      } else {
        MarkDown(d, started);
      }
    }
  }
  UpdateReadyMarker();
  Publish();
  absl::Time next = now + options_.liveness_period;
  for (const auto& d : daemons_) {
    if (d->status.state == DaemonState::kUp) next = std::min(next, d->next_probe);
    if (d->status.state == DaemonState::kDown) next = std::min(next, d->status.next_attempt);
  }
  return next;
}

void Supervisor::Run() {
  while (!stop_requested_.HasBeenNotified()) {
    const absl::Time next = Tick();
    if (stop_requested_.HasBeenNotified()) break;
    wakeup_.SleepUntil(clock_, next);
  }
}

void Supervisor::RequestStop() {
  // Notification::Notify must happen once, even when several threads ask at the
  // same time.
  if (!stop_once_.exchange(true)) stop_requested_.Notify();
  wakeup_.Wake();
}

void Supervisor::Wake() { wakeup_.Wake(); }

absl::Status Supervisor::StopAll() {
  absl::MutexLock lock(&work_mu_);
  if (!started_) return absl::OkStatus();
  started_ = false;
  std::vector<std::string> problems;
  RemoveFile(ReadyMarker(options_.mps_root));
  ready_marker_ = false;
  for (const auto& owned : daemons_) StopOne(*owned, problems);
  Publish();
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(problems, "; "));
}

void Supervisor::StopOne(Daemon& d, std::vector<std::string>& problems) {
  RemoveFile(d.paths.started_marker);
  const bool was_running = d.launched;
  if (absl::Status s = ShutDown(d, options_.stop_timeout); !s.ok()) {
    problems.push_back(absl::StrCat(d.spec.name, ": ", s.message()));
  } else if (was_running) {
    spdlog::info("MPS control daemon for resource '{}' stopped", d.spec.name);
  }
  if (absl::Status s = RestoreComputeMode(d); !s.ok()) {
    problems.push_back(absl::StrCat(d.spec.name, ": ", s.message()));
  }
  d.status.state = DaemonState::kStopped;
}

absl::Status Supervisor::Update(std::vector<DaemonSpec> specs) {
  if (absl::Status s = ValidateSpecs(specs, options_); !s.ok()) return s;
  absl::MutexLock lock(&work_mu_);
  std::vector<std::unique_ptr<Daemon>> kept;
  std::vector<std::unique_ptr<Daemon>> retired;
  std::vector<DaemonSpec> to_start;
  for (DaemonSpec& spec : specs) {
    auto same = std::find_if(daemons_.begin(), daemons_.end(),
                             [&](const auto& d) { return d && d->spec == spec; });
    if (same != daemons_.end()) {
      kept.push_back(std::move(*same));
    } else {
      to_start.push_back(std::move(spec));
    }
  }
  for (auto& d : daemons_) {
    if (d) retired.push_back(std::move(d));
  }
  std::vector<std::string> problems;
  for (auto& d : retired) {
    spdlog::info("reload: stopping the MPS control daemon for resource '{}' ({})", d->spec.name,
                 std::any_of(to_start.begin(), to_start.end(),
                             [&](const DaemonSpec& s) { return s.name == d->spec.name; })
                     ? "changed"
                     : "no longer configured");
    StopOne(*d, problems);
  }
  for (const auto& d : kept) {
    spdlog::info("reload: MPS control daemon for resource '{}' unchanged; kept running",
                 d->spec.name);
  }
  daemons_ = std::move(kept);
  for (DaemonSpec& spec : to_start) {
    auto d = MakeDaemon(std::move(spec));
    if (absl::Status s = StartOne(*d); !s.ok()) {
      MarkDown(*d, s);
      problems.push_back(absl::StrCat(d->spec.name, ": ", s.message()));
    }
    daemons_.push_back(std::move(d));
  }
  UpdateReadyMarker();
  Publish();
  wakeup_.Wake();  // Run's next step may now be due sooner (a restart of a new daemon)
  if (problems.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("reload: ", absl::StrJoin(problems, "; ")));
}

absl::StatusOr<std::string> Supervisor::Control(Daemon& d, const std::string& command,
                                                absl::Duration timeout) {
  return RunControlCommand(runner_, d.target, command, timeout, options_.kill_grace);
}

void Supervisor::Publish() {
  std::vector<DaemonStatus> statuses;
  for (const auto& d : daemons_) statuses.push_back(d->status);
  absl::MutexLock lock(&status_mu_);
  published_ = std::move(statuses);
}

std::vector<DaemonStatus> Supervisor::Statuses() const {
  absl::MutexLock lock(&status_mu_);
  return published_;
}

bool Supervisor::WaitForStatus(
    const std::function<bool(const std::vector<DaemonStatus>&)>& predicate,
    absl::Duration timeout) const {
  absl::MutexLock lock(&status_mu_);
  auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return predicate(published_); };
  return status_mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
}

}  // namespace nvdp::mps
