#include "mps/probe.h"

#include <sys/stat.h>

#include <algorithm>
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

void DaemonMonitor::Report(bool healthy, const absl::Status& why) {
  healthy_.store(healthy);
  if (on_change_) on_change_(healthy, why);
}

void DaemonMonitor::MarkerChanged(bool exists) {
  {
    absl::MutexLock lock(&changes_mu_);
    changes_.push_back({++changes_seen_, exists});
  }
  wakeup_.Wake();
}

uint64_t DaemonMonitor::MarkerChanges() const {
  absl::MutexLock lock(&changes_mu_);
  return changes_seen_;
}

void DaemonMonitor::ForgetMarkerChangesThrough(uint64_t count) {
  absl::MutexLock lock(&changes_mu_);
  while (!changes_.empty() && changes_.front().number <= count) changes_.pop_front();
}

absl::Time DaemonMonitor::Step() {
  while (true) {
    std::optional<Change> change;
    {
      absl::MutexLock lock(&changes_mu_);
      if (!changes_.empty()) {
        change = changes_.front();
        changes_.pop_front();
      }
    }
    if (!change.has_value()) break;
    if (change->exists) {
      // Probe it now, and again shortly while it does not answer yet.
      recheck_until_ = clock_.Now() + options_.recheck_for;
      next_recheck_ = absl::InfinitePast();
      continue;
    }
    // The daemon is down or being restarted: no probe can say otherwise.
    recheck_until_.reset();
    failures_ = std::max(failures_, options_.failure_threshold);
    if (healthy_.load()) {
      const absl::Status why = absl::UnavailableError(
          "its .started marker was removed (the daemon went down or is being restarted)");
      spdlog::error("{} is down: {}", probe_.Describe(), std::string(why.message()));
      Report(false, why);
    }
  }
  absl::Time now = clock_.Now();
  if (recheck_until_.has_value() && now >= next_recheck_) {
    absl::Status status = probe_.Probe(options_.probe_timeout);
    now = clock_.Now();
    if (status.ok()) {
      recheck_until_.reset();
      failures_ = 0;
      next_probe_ = now + options_.period;
      if (!healthy_.load()) {
        spdlog::info("{} is back (its .started marker was created): healthy", probe_.Describe());
        Report(true, status);
      }
    } else if (now >= *recheck_until_) {
      recheck_until_.reset();
      spdlog::warn("{}: its .started marker was created, but it does not answer: {}",
                   probe_.Describe(), std::string(status.message()));
    } else {
      next_recheck_ = now + options_.recheck_interval;
    }
  }
  if (now >= next_probe_) {
    CheckOnce();
    now = clock_.Now();
    next_probe_ = now + options_.period;
  }
  absl::Time next = next_probe_;
  if (recheck_until_.has_value()) next = std::min(next, next_recheck_);
  return next;
}

void DaemonMonitor::Run() {
  while (!stop_.load()) {
    const absl::Time next = Step();
    if (stop_.load()) break;
    wakeup_.SleepUntil(clock_, next);
  }
}

void DaemonMonitor::RequestStop() {
  stop_.store(true);
  wakeup_.Wake();
}

}  // namespace nvdp::mps
