#include "mps/marker_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "logging/logging.h"
#include "spdlog/spdlog.h"

namespace nvdp::mps {
namespace {

// The same mask for every directory, whether it is a watch's own or an ancestor: several watches
// may share one inotify watch, and inotify_add_watch replaces the mask of an existing one.
constexpr uint32_t kMask = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF |
                           IN_MOVE_SELF | IN_ONLYDIR;

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// The name of the directory below `ancestor` on the way to `dir`.
std::string NextComponent(const std::string& ancestor, const std::string& dir) {
  const size_t start = ancestor == "/" ? 1 : ancestor.size() + 1;
  const size_t end = dir.find('/', start);
  return dir.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MarkerWatcher>> MarkerWatcher::Create() {
  const int inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) {
    return absl::InternalError(absl::StrCat("inotify_init1: ", std::strerror(errno)));
  }
  const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int err = errno;
    ::close(inotify_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(err)));
  }
  std::unique_ptr<MarkerWatcher> watcher(new MarkerWatcher(inotify_fd, wake_fd));
  watcher->thread_ = std::thread([w = watcher.get()] {
    logging::NameThisThread("nvdp-markers");
    w->Run();
  });
  return watcher;
}

MarkerWatcher::MarkerWatcher(int inotify_fd, int wake_fd)
    : inotify_fd_(inotify_fd), wake_fd_(wake_fd) {}

MarkerWatcher::~MarkerWatcher() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  ::close(inotify_fd_);
  ::close(wake_fd_);
}

absl::StatusOr<int> MarkerWatcher::Add(const std::string& dir, const std::string& file,
                                       Callback callback) {
  std::string normal = std::filesystem::path(dir).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  if (normal.empty() || normal[0] != '/' || file.empty() || file.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("cannot watch \"", file, "\" in \"", dir,
                                                   "\": need an absolute directory "
                                                   "and a file name"));
  }
  absl::MutexLock lock(&mu_);
  const int id = next_id_++;
  Watch& w = watches_[id];
  w.dir = std::move(normal);
  w.file = file;
  if (absl::Status s = Resolve(w); !s.ok()) {
    watches_.erase(id);
    return s;
  }
  w.callback = std::move(callback);  // set last: Resolve reported the starting state to no one
  return id;
}

void MarkerWatcher::Remove(int id) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  Detach(it->second);
  watches_.erase(it);
}

void MarkerWatcher::Detach(Watch& w) {
  if (w.wd < 0) return;
  if (--users_[w.wd] == 0) {
    users_.erase(w.wd);
    ::inotify_rm_watch(inotify_fd_, w.wd);  // EINVAL when the directory is gone: fine
  }
  w.wd = -1;
}

void MarkerWatcher::SetExists(Watch& w, bool exists) {
  if (w.exists == exists) return;
  w.exists = exists;
  if (w.callback) w.callback(exists);
}

absl::Status MarkerWatcher::Resolve(Watch& w) {
  // A few rounds at most: each one follows a directory created while we looked.
  for (int round = 0; round < 32; ++round) {
    std::string path = w.dir;
    int wd;
    while ((wd = ::inotify_add_watch(inotify_fd_, path.c_str(), kMask)) < 0) {
      const int err = errno;
      if ((err != ENOENT && err != ENOTDIR) || path == "/") {
        Detach(w);
        SetExists(w, false);
        return absl::UnavailableError(absl::StrCat("cannot watch ", path, " (for ", w.dir, "/",
                                                   w.file, "): ", std::strerror(err)));
      }
      path = Parent(path);
    }
    if (wd != w.wd) {
      Detach(w);
      w.wd = wd;
      ++users_[wd];
    }
    w.watched = path;
    if (path == w.dir) break;
    // The next directory down may have been created after watching it failed and before its
    // parent was watched: that creation was not seen, so look again.
    if (!IsDir(absl::StrCat(path == "/" ? "" : path, "/", NextComponent(path, w.dir)))) break;
  }
  SetExists(w, w.watched == w.dir && Exists(absl::StrCat(w.dir, "/", w.file)));
  return absl::OkStatus();
}

void MarkerWatcher::HandleEvents(const char* buffer, size_t length) {
  for (const char* p = buffer; p < buffer + length;) {
    const auto* event = reinterpret_cast<const inotify_event*>(p);
    p += sizeof(inotify_event) + event->len;
    const bool overflow = event->mask & IN_Q_OVERFLOW;
    const bool self = event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED);
    const std::string_view name = event->len > 0 ? std::string_view(event->name) : "";
    for (auto& [id, w] : watches_) {
      if (!overflow && (w.wd < 0 || w.wd != event->wd)) continue;
      absl::Status resolved = absl::OkStatus();
      if (overflow || self) {
        // Events were lost, or the watched directory went: look at the file system again.
        resolved = Resolve(w);
      } else if (w.watched == w.dir) {
        if (name != w.file) continue;
        if (event->mask & (IN_CREATE | IN_MOVED_TO)) SetExists(w, true);
        if (event->mask & (IN_DELETE | IN_MOVED_FROM)) SetExists(w, false);
      } else if ((event->mask & (IN_CREATE | IN_MOVED_TO)) &&
                 name == NextComponent(w.watched, w.dir)) {
        resolved = Resolve(w);  // a directory on the way appeared: go down
      }
      if (!resolved.ok()) {
        spdlog::warn("{}; changes of {}/{} are no longer watched", std::string(resolved.message()),
                     w.dir, w.file);
      }
    }
  }
}

void MarkerWatcher::Run() {
  alignas(inotify_event) char buffer[16 * 1024];
  while (true) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("marker watcher: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (!(fds[0].revents & POLLIN)) continue;
    absl::MutexLock lock(&mu_);
    ssize_t length;
    while ((length = ::read(inotify_fd_, buffer, sizeof(buffer))) > 0) {
      HandleEvents(buffer, static_cast<size_t>(length));
    }
  }
}

}  // namespace nvdp::mps
