// DirWatcher: reports files created in or deleted from one directory (inotify), which is how the
// plugin notices a kubelet restart (kubelet.sock re-created, our sockets wiped).
//
// Owns one background thread that calls the callback; the callback must not block for long and
// must not destroy the watcher. If the directory itself is removed, the watcher waits for it to
// come back and then reports every file already in it as created. Destruction stops the thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace nvdp::kubelet {

class DirWatcher {
 public:
  enum class Change { kCreated, kDeleted };
  using Callback = std::function<void(const std::string& file_name, Change change)>;

  static absl::StatusOr<std::unique_ptr<DirWatcher>> Create(std::string dir, Callback callback);
  ~DirWatcher();

  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

 private:
  DirWatcher(std::string dir, Callback callback, int inotify_fd, int wake_fd);
  void Run();
  bool AddWatch();
  void ReportExistingFiles();

  const std::string dir_;
  const Callback callback_;
  const int inotify_fd_;
  const int wake_fd_;
  int watch_ = -1;  // only touched by the thread after construction
  std::thread thread_;
};

}  // namespace nvdp::kubelet
