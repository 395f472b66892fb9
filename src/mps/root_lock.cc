#include "mps/root_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace nvdp::mps {

std::string RootLockPath(const std::string& mps_root) { return mps_root + "/.lock"; }

absl::StatusOr<std::unique_ptr<RootLock>> RootLock::TryAcquire(const std::string& mps_root) {
  std::error_code error;
  std::filesystem::create_directories(mps_root, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create the MPS root ", mps_root, ": ", error.message()));
  }
  const std::string path = RootLockPath(mps_root);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int flock_errno = errno;
    char buffer[32] = {};
    const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
    ::close(fd);
    if (flock_errno != EWOULDBLOCK) {
      return absl::InternalError(
          absl::StrCat("cannot lock ", path, ": ", std::strerror(flock_errno)));
    }
    std::string holder = "another process";
    int pid = 0;
    if (n > 0 &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(std::string(buffer, static_cast<size_t>(n))),
                         &pid)) {
      holder = absl::StrCat("another mps-control-daemon (pid ", pid, ")");
    }
    return absl::FailedPreconditionError(
        absl::StrCat(holder, " holds ", path,
                     ": one mps-control-daemon per MPS root, or they "
                     "quit each other's daemons"));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for messages; the lock itself is held.
  }
  return std::unique_ptr<RootLock>(new RootLock(path, fd));
}

RootLock::~RootLock() { ::close(fd_); }  // releases the lock

}  // namespace nvdp::mps
