// MarkerWatcher: reports when marker files (an MPS resource's <mpsRoot>/<resource>/.started) are
// created or removed, through inotify, so that the plugin hears of a daemon going down or coming
// back at once instead of at its next probe.
//
// Each watch is one file in one directory. The directory may not exist yet, and may be removed and
// created again: the deepest existing ancestor is watched until the directory appears (no polling),
// and a marker that appears or vanishes with its directory is reported too. Every change is
// reported in order, as a transition of the file's existence: a removal quickly followed by a
// creation gives two callbacks (false, then true), never none.
//
// Owns one thread for all its watches, blocked in poll() until something changes. Callbacks run on
// that thread with the watcher's lock held: they must be quick and must not call Add or Remove.
// Thread-safety: Add and Remove may be called from any thread; after Remove returns (or the
// watcher is destroyed) the watch's callback is not running and is not called again.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace nvdp::mps {

class MarkerWatcher {
 public:
  // `exists`: the file was created (true) or removed (false).
  using Callback = std::function<void(bool exists)>;

  static absl::StatusOr<std::unique_ptr<MarkerWatcher>> Create();
  ~MarkerWatcher();

  MarkerWatcher(const MarkerWatcher&) = delete;
  MarkerWatcher& operator=(const MarkerWatcher&) = delete;

  // Watches `<dir>/<file>` (`dir` absolute). Changes after Add returns are reported; the state at
  // Add is the caller's to read. Returns the watch's id, or an error when even the directory's
  // ancestors cannot be watched (e.g. the inotify watch limit).
  absl::StatusOr<int> Add(const std::string& dir, const std::string& file, Callback callback);
  void Remove(int id);

 private:
  struct Watch {
    std::string dir;
    std::string file;
    Callback callback;
    int wd = -1;          // the inotify watch on `watched`
    std::string watched;  // `dir`, or its deepest existing ancestor
    bool exists = false;  // the file's existence as last reported
  };

  MarkerWatcher(int inotify_fd, int wake_fd);
  void Run();
  void HandleEvents(const char* buffer, size_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Watches the deepest existing directory on the way to `w.dir`, then reconciles w.exists with
  // the file (reporting a change).
  absl::Status Resolve(Watch& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Detach(Watch& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetExists(Watch& w, bool exists) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int inotify_fd_;
  const int wake_fd_;
  absl::Mutex mu_;
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int, Watch> watches_ ABSL_GUARDED_BY(mu_);
  std::map<int, int> users_ ABSL_GUARDED_BY(mu_);  // inotify watch -> watches using it
  std::thread thread_;
};

}  // namespace nvdp::mps
