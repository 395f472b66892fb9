#include "configmgr/signaler.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nvdp::configmgr {
namespace {

constexpr size_t kCommLen = 15;  // TASK_COMM_LEN - 1

// False when the file cannot be read to its end. Plain read(2): a process that exits while it is
// read makes its /proc files fail with ESRCH, which std::filebuf reports by throwing from
// underflow() whatever the stream's exception mask.
bool ReadFile(const std::filesystem::path& path, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out.clear();
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return false;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

bool Matches(const std::filesystem::path& dir, const std::string& name) {
  std::string comm;
  if (!ReadFile(dir / "comm", comm)) return false;
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  if (name.size() <= kCommLen) return comm == name;
  if (comm != name.substr(0, kCommLen)) return false;
  std::string cmdline;
  if (!ReadFile(dir / "cmdline", cmdline)) return false;
  const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
  const size_t slash = argv0.rfind('/');
  return (slash == std::string::npos ? argv0 : argv0.substr(slash + 1)) == name;
}

}  // namespace

absl::StatusOr<std::vector<pid_t>> FindProcesses(const std::string& proc_root,
                                                 const std::string& name, pid_t self) {
  std::error_code ec;
  std::filesystem::directory_iterator it(proc_root, ec);
  if (ec) {
    return absl::NotFoundError(absl::StrCat("cannot read ", proc_root, ": ", ec.message()));
  }
  std::vector<pid_t> pids;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    int pid = 0;
    if (!absl::SimpleAtoi(it->path().filename().string(), &pid) || pid <= 0 || pid == self) {
      continue;
    }
    if (Matches(it->path(), name)) pids.push_back(pid);
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read ", proc_root, ": ", ec.message()));
  std::sort(pids.begin(), pids.end());
  return pids;
}

absl::StatusOr<int> ProcSignaler::SignalAll(const std::string& name, int signal) {
  auto pids = FindProcesses(proc_root_, name, ::getpid());
  if (!pids.ok()) return pids.status();
  int sent = 0;
  std::string failures;
  for (pid_t pid : *pids) {
    if (::kill(pid, signal) == 0) {
      ++sent;
    } else if (errno != ESRCH) {  // one that exited meanwhile is not a failure
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", "pid ", pid, ": ",
                      std::strerror(errno));
    }
  }
  if (sent == 0 && !failures.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("signal ", signal, " to \"", name, "\" failed: ", failures));
  }
  return sent;
}

}  // namespace nvdp::configmgr
