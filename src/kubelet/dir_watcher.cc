#include "kubelet/dir_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "logging/logging.h"
#include "spdlog/spdlog.h"

namespace nvdp::kubelet {
namespace {
constexpr uint32_t kMask =
    IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF;
// While the directory is missing, look for it again this often.
constexpr int kMissingDirPollMs = 100;
}  // namespace

absl::StatusOr<std::unique_ptr<DirWatcher>> DirWatcher::Create(std::string dir, Callback callback) {
  int inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) {
    return absl::InternalError(absl::StrCat("inotify_init1: ", std::strerror(errno)));
  }
  int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    ::close(inotify_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  std::unique_ptr<DirWatcher> watcher(
      new DirWatcher(std::move(dir), std::move(callback), inotify_fd, wake_fd));
  if (!watcher->AddWatch()) {
    return absl::NotFoundError(
        absl::StrCat("cannot watch ", watcher->dir_, ": ", std::strerror(errno)));
  }
  watcher->thread_ = std::thread([w = watcher.get()] {
    logging::NameThisThread("nvdp-dirwatch");
    w->Run();
  });
  return watcher;
}

DirWatcher::DirWatcher(std::string dir, Callback callback, int inotify_fd, int wake_fd)
    : dir_(std::move(dir)),
      callback_(std::move(callback)),
      inotify_fd_(inotify_fd),
      wake_fd_(wake_fd) {}

DirWatcher::~DirWatcher() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  ::close(inotify_fd_);
  ::close(wake_fd_);
}

bool DirWatcher::AddWatch() {
  watch_ = ::inotify_add_watch(inotify_fd_, dir_.c_str(), kMask);
  return watch_ >= 0;
}

void DirWatcher::ReportExistingFiles() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    callback_(entry.path().filename().string(), Change::kCreated);
  }
}

void DirWatcher::Run() {
  alignas(inotify_event) char buffer[16 * 1024];
  while (true) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int timeout = watch_ < 0 ? kMissingDirPollMs : -1;
    int ready = ::poll(fds, 2, timeout);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("watching {}: poll: {}", dir_, std::strerror(errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (watch_ < 0) {
      if (AddWatch()) {
        spdlog::info("{} is back; watching it again", dir_);
        ReportExistingFiles();
      }
      continue;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    ssize_t len;
    while ((len = ::read(inotify_fd_, buffer, sizeof(buffer))) > 0) {
      for (char* p = buffer; p < buffer + len;) {
        auto* event = reinterpret_cast<inotify_event*>(p);
        p += sizeof(inotify_event) + event->len;
        if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          if (watch_ >= 0) {
            spdlog::warn("{} was removed; waiting for it to come back", dir_);
            ::inotify_rm_watch(inotify_fd_, watch_);
            watch_ = -1;
          }
          continue;
        }
        if (event->len == 0) continue;
        std::string name(event->name);
        if (event->mask & (IN_CREATE | IN_MOVED_TO)) callback_(name, Change::kCreated);
        if (event->mask & (IN_DELETE | IN_MOVED_FROM)) callback_(name, Change::kDeleted);
      }
    }
  }
}

}  // namespace nvdp::kubelet
