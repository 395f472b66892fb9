// Test doubles for the MPS supervisor's outside world:
//   FakeClock   time that moves only when advanced or slept on (sleeping jumps
//   to the deadline) FakeRunner  a ProcessRunner that simulates
//   nvidia-cuda-mps-control (daemons keyed by their
//               pipe directory, the client, -d and -f) and nvidia-smi, records
//               every call, and can be told to fail in the ways real ones do
//   FakeProber  a Prober answering from a queue of statuses
// Header-only so plugin tests can use them too ("mps/mps_fakes.h").
//
// Thread-safety: every method locks; safe from several threads.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "mps/clock.h"
#include "mps/probe.h"
#include "mps/process.h"

namespace nvdp::mps::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  bool SleepUntil(absl::Time deadline, const absl::Notification* cancel) override {
    if (cancel != nullptr && cancel->HasBeenNotified()) return false;
    absl::MutexLock lock(&mu_);
    ++sleeps_;
    if (deadline > now_) now_ = deadline;
    return true;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }
  int sleeps() const {
    absl::MutexLock lock(&mu_);
    return sleeps_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int sleeps_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeRunner final : public ProcessRunner {
 public:
  struct Call {
    std::string kind;  // "run" or "spawn"
    CommandSpec spec;
    std::string pipe_dir;          // CUDA_MPS_PIPE_DIRECTORY in its env ("" if none)
    std::string Command() const {  // the stdin command without the newline
      return std::string(absl::StripSuffix(spec.stdin_text, "\n"));
    }
  };

  // Knobs (set them before the calls they should affect).
  struct Knobs {
    bool control_binary_missing = false;  // Run/Spawn of the control binary -> NotFound
    int launcher_exit_code = 0;           // `-d` exit status (non-zero: no daemon)
    std::string launcher_stderr;
    bool launcher_hangs = false;      // `-d` -> DeadlineExceeded after its timeout
    bool exit_at_once = false;        // the daemon dies right after starting (exit status 1)
    int probes_fail_after_start = 0;  // the first N probes after a start fail (not listening yet)
    std::string reject_verb;          // commands starting with it exit 1
    int smi_exit_code = 0;
    std::string smi_output;
  };

  explicit FakeRunner(FakeClock& clock) : clock_(clock) {}

  void SetKnobs(const Knobs& knobs) {
    absl::MutexLock lock(&mu_);
    knobs_ = knobs;
  }
  Knobs knobs() const {
    absl::MutexLock lock(&mu_);
    return knobs_;
  }

  // Simulated daemon control, by pipe directory.
  void StartDaemonOutsideSupervisor(const std::string& pipe_dir) {
    absl::MutexLock lock(&mu_);
    daemons_[pipe_dir] = std::make_shared<Daemon>();
  }
  void KillDaemon(const std::string& pipe_dir) {  // as if it crashed (child exits 1)
    absl::MutexLock lock(&mu_);
    if (auto it = daemons_.find(pipe_dir); it != daemons_.end()) {
      it->second->exit = ExitStatus{1, 0};
      daemons_.erase(it);
    }
  }
  void HangDaemon(const std::string& pipe_dir) {
    absl::MutexLock lock(&mu_);
    if (auto it = daemons_.find(pipe_dir); it != daemons_.end()) it->second->hung = true;
  }
  bool DaemonRunning(const std::string& pipe_dir) const {
    absl::MutexLock lock(&mu_);
    return daemons_.count(pipe_dir) > 0;
  }
  int terminations() const {
    absl::MutexLock lock(&mu_);
    return terminations_;
  }

  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  void ClearCalls() {
    absl::MutexLock lock(&mu_);
    calls_.clear();
  }
  // Commands sent through the control client to `pipe_dir`, in order.
  std::vector<std::string> Commands(const std::string& pipe_dir, bool with_probes = true) const {
    std::vector<std::string> out;
    for (const Call& call : calls()) {
      if (call.kind != "run" || call.pipe_dir != pipe_dir || !call.spec.args.empty() ||
          absl::StrContains(call.spec.program, "nvidia-smi")) {
        continue;
      }
      if (!with_probes && call.Command() == kProbeCommand) continue;
      out.push_back(call.Command());
    }
    return out;
  }
  // Argument lists of every nvidia-smi call, joined by spaces.
  std::vector<std::string> SmiCalls() const {
    std::vector<std::string> out;
    for (const Call& call : calls()) {
      if (!absl::StrContains(call.spec.program, "nvidia-smi")) continue;
      std::string line;
      for (const std::string& arg : call.spec.args)
        absl::StrAppend(&line, line.empty() ? "" : " ", arg);
      out.push_back(line);
    }
    return out;
  }
  // Launches (`-d` runs and `-f` spawns) of the control binary.
  std::vector<Call> Launches() const {
    std::vector<Call> out;
    for (const Call& call : calls()) {
      if (!call.spec.args.empty() && (call.spec.args[0] == "-d" || call.spec.args[0] == "-f")) {
        out.push_back(call);
      }
    }
    return out;
  }

  // Called (unlocked) at the start of every Run, e.g. to act in the middle of a
  // supervisor step.
  std::function<void(const CommandSpec&)> on_run;

  absl::StatusOr<CommandResult> Run(const CommandSpec& spec) override {
    if (on_run) on_run(spec);
    absl::MutexLock lock(&mu_);
    Call call{"run", spec, EnvValue(spec.env, "CUDA_MPS_PIPE_DIRECTORY")};
    calls_.push_back(call);
    if (absl::StrContains(spec.program, "nvidia-smi")) {
      return Result(knobs_.smi_exit_code, knobs_.smi_output, "");
    }
    if (knobs_.control_binary_missing) return NotFound(spec);
    if (!spec.args.empty() && spec.args[0] == "-d") {
      if (knobs_.launcher_hangs) {
        clock_.Advance(spec.timeout + spec.kill_grace);
        return absl::DeadlineExceededError(
            absl::StrCat("`", spec.CommandLine(), "` did not finish within ",
                         absl::FormatDuration(spec.timeout), " and was killed"));
      }
      if (knobs_.launcher_exit_code != 0) {
        return Result(knobs_.launcher_exit_code, "", knobs_.launcher_stderr);
      }
      StartDaemonLocked(call.pipe_dir);
      return Result(0, "", "");
    }
    // The client.
    auto it = daemons_.find(call.pipe_dir);
    if (it == daemons_.end()) {
      return Result(1, "", "Cannot find MPS control daemon process");
    }
    Daemon& daemon = *it->second;
    if (daemon.hung) {
      clock_.Advance(spec.timeout + spec.kill_grace);
      return absl::DeadlineExceededError(absl::StrCat(
          "`", spec.CommandLine(), "` did not finish within ", absl::FormatDuration(spec.timeout)));
    }
    if (daemon.probes_to_fail > 0) {
      --daemon.probes_to_fail;
      return Result(1, "", "Cannot find MPS control daemon process");
    }
    const std::string command = call.Command();
    if (!knobs_.reject_verb.empty() && absl::StartsWith(command, knobs_.reject_verb)) {
      return Result(1, "", "rejected: " + command);
    }
    if (command == "quit") {
      daemon.exit = ExitStatus{0, 0};
      daemons_.erase(it);
      return Result(0, "", "");
    }
    return Result(0, command == kProbeCommand ? "100.0\n" : "", "");
  }

  absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const CommandSpec& spec) override {
    absl::MutexLock lock(&mu_);
    Call call{"spawn", spec, EnvValue(spec.env, "CUDA_MPS_PIPE_DIRECTORY")};
    calls_.push_back(call);
    if (knobs_.control_binary_missing) return NotFound(spec);
    std::shared_ptr<Daemon> daemon = StartDaemonLocked(call.pipe_dir);
    return std::unique_ptr<ChildProcess>(new Child(this, daemon, call.pipe_dir, next_pid_++));
  }

 private:
  struct Daemon {
    bool hung = false;
    int probes_to_fail = 0;
    std::optional<ExitStatus> exit;  // set once it ended
  };

  class Child final : public ChildProcess {
   public:
    Child(FakeRunner* runner, std::shared_ptr<Daemon> daemon, std::string pipe_dir, int pid)
        : runner_(runner), daemon_(std::move(daemon)), pipe_dir_(std::move(pipe_dir)), pid_(pid) {}
    int pid() const override { return pid_; }
    std::optional<ExitStatus> Poll() override {
      absl::MutexLock lock(&runner_->mu_);
      return daemon_->exit;
    }
    std::optional<ExitStatus> Wait(absl::Duration) override { return Poll(); }
    std::optional<ExitStatus> Terminate(absl::Duration) override {
      absl::MutexLock lock(&runner_->mu_);
      if (!daemon_->exit.has_value()) {
        daemon_->exit = ExitStatus{-1, 15};
        ++runner_->terminations_;
        auto it = runner_->daemons_.find(pipe_dir_);
        if (it != runner_->daemons_.end() && it->second == daemon_) runner_->daemons_.erase(it);
      }
      return daemon_->exit;
    }

   private:
    FakeRunner* runner_;
    std::shared_ptr<Daemon> daemon_;
    std::string pipe_dir_;
    int pid_;
  };

  static std::string EnvValue(const std::vector<std::string>& env, const std::string& name) {
    for (const std::string& entry : env) {
      if (absl::StartsWith(entry, name + "=")) return entry.substr(name.size() + 1);
    }
    return "";
  }
  static CommandResult Result(int code, std::string out, std::string err) {
    CommandResult result;
    result.status.exit_code = code;
    result.out = std::move(out);
    result.err = std::move(err);
    return result;
  }
  static absl::Status NotFound(const CommandSpec& spec) {
    return absl::NotFoundError(absl::StrCat(spec.program, ": not found in PATH (/usr/bin:/bin)"));
  }
  std::shared_ptr<Daemon> StartDaemonLocked(const std::string& pipe_dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto daemon = std::make_shared<Daemon>();
    daemon->probes_to_fail = knobs_.probes_fail_after_start;
    if (knobs_.exit_at_once) {
      daemon->exit = ExitStatus{1, 0};
    } else {
      daemons_[pipe_dir] = daemon;
    }
    return daemon;
  }

  FakeClock& clock_;
  mutable absl::Mutex mu_;
  Knobs knobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Daemon>> daemons_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  int next_pid_ ABSL_GUARDED_BY(mu_) = 4242;
  int terminations_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeProber final : public Prober {
 public:
  // Answers from `script` in order; when it runs out, repeats `then`.
  FakeProber(std::deque<absl::Status> script, absl::Status then = absl::OkStatus())
      : script_(std::move(script)), then_(std::move(then)) {}
  absl::Status Probe(absl::Duration) override {
    absl::MutexLock lock(&mu_);
    ++probes_;
    if (script_.empty()) return then_;
    absl::Status next = script_.front();
    script_.pop_front();
    return next;
  }
  std::string Describe() const override { return "the fake daemon"; }
  void Then(absl::Status then) {
    absl::MutexLock lock(&mu_);
    then_ = std::move(then);
  }
  int probes() const {
    absl::MutexLock lock(&mu_);
    return probes_;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::Status> script_ ABSL_GUARDED_BY(mu_);
  absl::Status then_ ABSL_GUARDED_BY(mu_);
  int probes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nvdp::mps::testing
