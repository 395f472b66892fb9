#include "mps/probe.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace nvdp::mps {

DaemonProbe::DaemonProbe(DaemonProbeOptions options, ProcessRunner& runner)
    : options_(std::move(options)),
      paths_(PathsFor(options_.mps_root, options_.resource)),
      runner_(runner) {}

std::string DaemonProbe::Describe() const {
  return absl::StrCat("the MPS control daemon for '", options_.resource, "' (", paths_.dir, ")");
}

absl::Status DaemonProbe::Probe(absl::Duration timeout) {
  if (options_.require_started_marker) {
    struct stat st;
    if (stat(paths_.started_marker.c_str(), &st) != 0) {
      return absl::UnavailableError(
          absl::StrCat("not started: ", paths_.started_marker,
                       " does not exist (is the mps-control-daemon DaemonSet "
                       "running on this "
                       "node, with the same MPS root?)"));
    }
  }
  ControlTarget target;
  target.control_binary = options_.control_binary;
  target.pipe_dir = paths_.pipe_dir;
  target.log_dir = paths_.log_dir;
  target.base_env = options_.base_env;
  return RunControlCommand(runner_, target, kProbeCommand, timeout).status();
}

absl::Status WaitUntilReady(Prober& probe, Clock& clock, const WaitOptions& options,
                            const absl::Notification* cancel,
                            const std::function<void(const std::string&)>& log) {
  auto say = [&](const std::string& line) {
    if (log) {
      log(line);
    } else {
      spdlog::info("{}", line);
    }
  };
  const absl::Time start = clock.Now();
  const absl::Time deadline = options.timeout == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                                          : start + options.timeout;
  absl::Time next_log = start;
  bool waited = false;
  while (true) {
    absl::Status status = probe.Probe(options.probe_timeout);
    const absl::Time now = clock.Now();
    if (status.ok()) {
      if (waited) {
        say(absl::StrCat(probe.Describe(), " is ready (after ", absl::FormatDuration(now - start),
                         ")"));
      }
      return status;
    }
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(probe.Describe(), " not ready after ",
                                                      absl::FormatDuration(options.timeout), ": ",
                                                      status.message()));
    }
    if (now >= next_log) {
      say(absl::StrCat("waiting for ", probe.Describe(), " to be ready: ", status.message()));
      next_log = now + options.log_every;
    }
    waited = true;
    if (!clock.SleepUntil(std::min(deadline, now + options.interval), cancel)) {
      return absl::CancelledError(
          absl::StrCat("stopped while waiting for ", probe.Describe(), ": ", status.message()));
    }
  }
}

DaemonMonitor::DaemonMonitor(Prober& probe, Clock& clock, MonitorOptions options,
                             Callback on_change)
    : probe_(probe), clock_(clock), options_(options), on_change_(std::move(on_change)) {}

bool DaemonMonitor::CheckOnce() {
  absl::Status status = probe_.Probe(options_.probe_timeout);
  if (status.ok()) {
    failures_ = 0;
    if (!healthy_.load()) {
      healthy_.store(true);
      spdlog::info("{} answers again: healthy", probe_.Describe());
      if (on_change_) on_change_(true, status);
    }
    return true;
  }
  ++failures_;
  if (healthy_.load() && failures_ >= options_.failure_threshold) {
    healthy_.store(false);
    spdlog::error("{} is down ({} failed probes in a row): {}", probe_.Describe(), failures_,
                  std::string(status.message()));
    if (on_change_) on_change_(false, status);
  } else if (healthy_.load()) {
    spdlog::warn("{}: probe failed ({} of {}): {}", probe_.Describe(), failures_,
                 options_.failure_threshold, std::string(status.message()));
  }
  return healthy_.load();
}

void DaemonMonitor::Run(const absl::Notification& stop) {
  while (!stop.HasBeenNotified()) {
    CheckOnce();
    if (!clock_.SleepUntil(clock_.Now() + options_.period, &stop)) return;
  }
}

}  // namespace nvdp::mps
