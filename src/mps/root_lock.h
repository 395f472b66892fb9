// RootLock: one mps-control-daemon per MPS root. Two supervisors on one root would quit each
// other's daemons and flap every share on the node (a rolling update overlap does exactly that).
//
// The lock is an exclusive flock(2) on <mpsRoot>/.lock, held for as long as the object lives; the
// file records the holder's pid for messages. The kernel drops the lock when the process dies, so
// a killed daemon never leaves a stale lock. Not thread-safe; owned by the daemon's main thread.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace nvdp::mps {

class RootLock {
 public:
  // Takes the lock without waiting. FailedPrecondition, naming the holder's pid, when another live
  // process holds it; other errors when the root or the lock file cannot be created.
  static absl::StatusOr<std::unique_ptr<RootLock>> TryAcquire(const std::string& mps_root);
  ~RootLock();

  RootLock(const RootLock&) = delete;
  RootLock& operator=(const RootLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  RootLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_;
};

// <mpsRoot>/.lock
std::string RootLockPath(const std::string& mps_root);

}  // namespace nvdp::mps
