#include "mps/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "logging/logging.h"

extern char** environ;

namespace nvdp::mps {
namespace {

constexpr size_t kMaxCapture = 1 << 20;
// After the child exited, how long to keep reading output that is still in
// flight (a grandchild may hold the pipes open forever; we do not wait for it).
constexpr absl::Duration kDrainAfterExit = absl::Milliseconds(100);
// Polling interval where pidfd_open is unavailable (old kernels, seccomp).
constexpr absl::Duration kFallbackTick = absl::Milliseconds(10);
constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status ErrnoStatus(int err, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status MakePipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return absl::OkStatus();
}

int PollTimeoutMs(absl::Duration remaining) {
  if (remaining <= absl::ZeroDuration()) return 0;
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(remaining, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

ExitStatus FromWaitStatus(int status) {
  ExitStatus result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

std::string PathOf(const std::vector<std::string>& env) {
  for (const std::string& entry : env) {
    if (absl::StartsWith(entry, "PATH=")) return entry.substr(5);
  }
  const char* path = getenv("PATH");
  return path != nullptr ? path : kDefaultPath;
}

class Child final : public ChildProcess {
 public:
  explicit Child(pid_t pid) : pid_(pid) {
    pidfd_ = Fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  }
  ~Child() override {
    if (!status_.has_value() && !abandoned_) Terminate(absl::Seconds(2));
  }

  int pid() const override { return pid_; }
  int pidfd() const { return pidfd_.get(); }

  std::optional<ExitStatus> Poll() override {
    if (status_.has_value() || abandoned_) return status_;
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) {
      status_ = FromWaitStatus(status);
    } else if (r < 0 && errno == ECHILD) {
      // Someone else reaped it (SIGCHLD ignored?): it is gone, status unknown.
      status_ = ExitStatus{};
    }
    return status_;
  }

  std::optional<ExitStatus> Wait(absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    while (!Poll().has_value() && !abandoned_) {
      const absl::Duration remaining = deadline - absl::Now();
      if (remaining <= absl::ZeroDuration()) return std::nullopt;
      if (pidfd_.valid()) {
        pollfd pfd{pidfd_.get(), POLLIN, 0};
        poll(&pfd, 1, PollTimeoutMs(remaining));
      } else {
        absl::SleepFor(std::min(remaining, kFallbackTick));
      }
    }
    return status_;
  }

  std::optional<ExitStatus> Terminate(absl::Duration grace) override {
    if (Poll().has_value() || abandoned_) return status_;
    Signal(SIGTERM);
    if (Wait(grace).has_value()) return status_;
    Signal(SIGKILL);
    if (Wait(grace).has_value()) return status_;
    // Not even SIGKILL ended it (uninterruptible sleep, e.g. stuck in a driver
    // call). Do not block the caller: reap it whenever it finally goes.
    abandoned_ = true;
    const pid_t pid = pid_;
    std::thread([pid] {
      logging::NameThisThread("nvdp-reaper");
      int status;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }).detach();
    return std::nullopt;
  }

 private:
  // The child leads its own process group (POSIX_SPAWN_SETPGROUP): signal the
  // group so helpers it started go too, and the child itself in case it left
  // the group. Only called before reaping, so the pid (and group id) cannot
  // have been recycled.
  void Signal(int sig) {
    kill(-pid_, sig);
    kill(pid_, sig);
  }

  const pid_t pid_;
  Fd pidfd_;
  std::optional<ExitStatus> status_;
  bool abandoned_ = false;
};

// Starts `spec` with the given descriptors as its stdin/stdout/stderr (-1:
// inherit ours).
absl::StatusOr<pid_t> SpawnRaw(const CommandSpec& spec, int stdin_fd, int stdout_fd,
                               int stderr_fd) {
  absl::StatusOr<std::string> path = ResolveProgram(spec.program, PathOf(spec.env));
  if (!path.ok()) return path.status();

  std::vector<std::string> argv_storage;
  argv_storage.push_back(spec.program);
  argv_storage.insert(argv_storage.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = spec.env;
  std::vector<char*> envp;
  for (std::string& entry : env_storage) envp.push_back(entry.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
  for (int target = 0; target < 3; ++target) {
    if (fds[target] >= 0 && fds[target] != target) {
      posix_spawn_file_actions_adddup2(&actions, fds[target], target);
    }
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t mask;
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  sigset_t defaults;
  sigfillset(&defaults);
  posix_spawnattr_setsigdefault(&attr, &defaults);

  pid_t pid = -1;
  const int err = posix_spawn(&pid, path->c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoStatus(err, absl::StrCat("cannot execute ", *path));
  return pid;
}

// Reads what is available on `fd` into `out` (capped); returns false at EOF or
// error.
bool ReadAvailable(int fd, std::string& out) {
  char buffer[4096];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n > 0) {
      const size_t room = kMaxCapture - std::min(kMaxCapture, out.size());
      out.append(buffer, std::min(room, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

class RealRunner final : public ProcessRunner {
 public:
  absl::StatusOr<CommandResult> Run(const CommandSpec& spec) override {
    if (spec.stdin_text.size() > CommandSpec::kMaxStdin) {
      return absl::InvalidArgumentError(absl::StrCat("stdin for `", spec.CommandLine(), "` is ",
                                                     spec.stdin_text.size(), " bytes; at most ",
                                                     CommandSpec::kMaxStdin, " supported"));
    }
    Fd in_read, in_write, out_read, out_write, err_read, err_write;
    for (auto [r, w] : {std::pair{&in_read, &in_write}, std::pair{&out_read, &out_write},
                        std::pair{&err_read, &err_write}}) {
      if (absl::Status s = MakePipe(*r, *w); !s.ok()) return s;
    }
    // The stdin text fits in the pipe buffer, so write it before the child
    // exists: no blocking, and no SIGPIPE however early the child exits.
    size_t written = 0;
    while (written < spec.stdin_text.size()) {
      const ssize_t n =
          write(in_write.get(), spec.stdin_text.data() + written, spec.stdin_text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(errno, "writing stdin");
      written += static_cast<size_t>(n);
    }
    in_write.Reset();

    absl::StatusOr<pid_t> pid = SpawnRaw(spec, in_read.get(), out_write.get(), err_write.get());
    if (!pid.ok()) return pid.status();
    in_read.Reset();
    out_write.Reset();
    err_write.Reset();
    Child child(*pid);
    fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
    fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

    CommandResult result;
    const absl::Time deadline = absl::Now() + spec.timeout;
    std::optional<absl::Time> drain_deadline;
    while (true) {
      if (!drain_deadline.has_value() && child.Poll().has_value()) {
        drain_deadline = absl::Now() + kDrainAfterExit;
      }
      const absl::Time now = absl::Now();
      if (drain_deadline.has_value() &&
          ((!out_read.valid() && !err_read.valid()) || now >= *drain_deadline)) {
        break;
      }
      if (!drain_deadline.has_value() && now >= deadline) {
        std::optional<ExitStatus> killed = child.Terminate(spec.kill_grace);
        std::string message = absl::StrCat(
            "`", spec.CommandLine(), "` did not finish within ", absl::FormatDuration(spec.timeout),
            " and was ", killed.has_value() ? "killed" : "abandoned (unkillable)");
        const std::string output = result.OutputForMessage();
        if (!output.empty()) absl::StrAppend(&message, "; output: ", output);
        return absl::DeadlineExceededError(message);
      }
      pollfd pfds[3];
      nfds_t count = 0;
      for (const Fd* fd : {&out_read, &err_read}) {
        if (fd->valid()) pfds[count++] = pollfd{fd->get(), POLLIN, 0};
      }
      const bool watch_pid = !drain_deadline.has_value() && child.pidfd() >= 0;
      if (watch_pid) pfds[count++] = pollfd{child.pidfd(), POLLIN, 0};
      absl::Duration wait = (drain_deadline.has_value() ? *drain_deadline : deadline) - now;
      if (!drain_deadline.has_value() && !watch_pid) wait = std::min(wait, kFallbackTick);
      if (poll(pfds, count, PollTimeoutMs(wait)) < 0 && errno != EINTR) {
        return ErrnoStatus(errno, "poll");
      }
      if (out_read.valid() && !ReadAvailable(out_read.get(), result.out)) out_read.Reset();
      if (err_read.valid() && !ReadAvailable(err_read.get(), result.err)) err_read.Reset();
    }
    result.status = *child.Poll();
    return result;
  }

  absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const CommandSpec& spec) override {
    Fd dev_null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null.valid()) return ErrnoStatus(errno, "open /dev/null");
    absl::StatusOr<pid_t> pid = SpawnRaw(spec, dev_null.get(), -1, -1);
    if (!pid.ok()) return pid.status();
    return std::make_unique<Child>(*pid);
  }
};

}  // namespace

std::string ExitStatus::ToString() const {
  if (signal != 0) {
    const char* name = sigabbrev_np(signal);
    return absl::StrCat("killed by signal ", signal,
                        name != nullptr ? absl::StrCat(" (SIG", name, ")") : "");
  }
  if (exit_code < 0) return "ended (status unknown)";
  return absl::StrCat("exit status ", exit_code);
}

std::string CommandSpec::CommandLine() const {
  std::string line = program;
  for (const std::string& arg : args) absl::StrAppend(&line, " ", arg);
  return line;
}

std::string CommandResult::OutputForMessage() const {
  std::vector<absl::string_view> parts;
  for (const std::string* text : {&err, &out}) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(*text);
    if (!trimmed.empty()) parts.push_back(trimmed);
  }
  std::string joined = absl::StrJoin(parts, " | ");
  constexpr size_t kMax = 600;
  if (joined.size() > kMax) joined = absl::StrCat(joined.substr(0, kMax), "...");
  return joined;
}

ProcessRunner& RealProcessRunner() {
  static ProcessRunner* const runner = new RealRunner();
  return *runner;
}

std::vector<std::string> InheritedEnvironment() {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    absl::string_view var(*entry);
    if (absl::StartsWith(var, "CUDA_MPS_") || absl::StartsWith(var, "CUDA_VISIBLE_DEVICES=")) {
      continue;
    }
    env.emplace_back(var);
  }
  return env;
}

absl::StatusOr<std::string> ResolveProgram(const std::string& program, const std::string& path) {
  if (program.empty()) return absl::InvalidArgumentError("empty program name");
  auto check = [](const std::string& candidate) -> absl::Status {
    struct stat st;
    if (stat(candidate.c_str(), &st) != 0) return ErrnoStatus(errno, candidate);
    if (!S_ISREG(st.st_mode)) return absl::PermissionDeniedError(candidate + ": not a file");
    if (access(candidate.c_str(), X_OK) != 0) return ErrnoStatus(errno, candidate);
    return absl::OkStatus();
  };
  if (program.find('/') != std::string::npos) {
    if (absl::Status s = check(program); !s.ok()) return s;
    return program;
  }
  absl::Status first_other_error;
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", program);
    absl::Status s = check(candidate);
    if (s.ok()) return candidate;
    if (!absl::IsNotFound(s) && first_other_error.ok()) first_other_error = s;
  }
  if (!first_other_error.ok()) return first_other_error;
  return absl::NotFoundError(absl::StrCat(program, ": not found in PATH (", path, ")"));
}

absl::StatusOr<std::string> FindDriverProgram(const std::string& program,
                                              const std::string& container_driver_root,
                                              const std::string& path) {
  std::string root = container_driver_root;
  while (!root.empty() && root.back() == '/') root.pop_back();
  std::vector<std::string> candidates;
  for (const char* dir : {"/usr/bin", "/usr/sbin", "/bin", "/sbin"}) {
    candidates.push_back(absl::StrCat(root, dir, "/", program));
  }
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", program);
    if (std::find(candidates.begin(), candidates.end(), candidate) == candidates.end()) {
      candidates.push_back(std::move(candidate));
    }
  }
  for (const std::string& candidate : candidates) {
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("cannot find ", program, "; tried ", absl::StrJoin(candidates, ", ")));
}

}  // namespace nvdp::mps
