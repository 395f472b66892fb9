#include "mps/shm.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mps/control.h"

namespace nvdp::mps {
namespace {

constexpr char kFallbackSize[] = "65536k";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Whether /proc/self/mountinfo lists a tmpfs mounted at `path`. Fields: id
// parent major:minor root mount-point options [optional...] - fstype source
// super-options.
bool TmpfsMountedAt(const std::string& mountinfo, const std::string& path) {
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 7 || fields[4] != path) continue;
    for (size_t i = 6; i + 1 < fields.size(); ++i) {
      if (fields[i] == "-") {
        if (fields[i + 1] == "tmpfs") return true;
        break;
      }
    }
  }
  return false;
}

}  // namespace

std::string ShmSize(const std::string& meminfo_text) {
  for (absl::string_view line : absl::StrSplit(meminfo_text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint64_t kib = 0;
    if (fields.size() >= 2 && fields[0] == "MemTotal:" && absl::SimpleAtoi(fields[1], &kib) &&
        kib >= 2) {
      return absl::StrCat(kib / 2, "k");
    }
  }
  return kFallbackSize;
}

absl::StatusOr<ShmMount> MountShm(const std::string& mps_root, const std::string& meminfo_path,
                                  const std::string& mountinfo_path, MountFunction mount_fn) {
  if (mps_root.empty() || mps_root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("mount-shm needs an absolute MPS root (--mps-root / "
                     "flags.mpsRoot); got \"",
                     mps_root, "\""));
  }
  ShmMount result;
  result.path = ShmDir(mps_root);
  result.size = ShmSize(ReadFile(meminfo_path));
  for (const std::string& dir : {mps_root, result.path}) {
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("cannot create directory ", dir, ": ", std::strerror(errno)));
    }
  }
  if (TmpfsMountedAt(ReadFile(mountinfo_path), result.path)) {
    result.already_mounted = true;
    return result;
  }
  if (!mount_fn)
    mount_fn = [](const char* s, const char* t, const char* f, unsigned long fl, const void* d) {
      return mount(s, t, f, fl, d);
    };
  const std::string options = absl::StrCat("size=", result.size, ",mode=1777");
  if (mount_fn("tmpfs", result.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    const int err = errno;
    const std::string what = absl::StrCat("mount -t tmpfs -o ", options, " tmpfs ", result.path,
                                          ": ", std::strerror(err));
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(
          absl::StrCat("mount-shm needs CAP_SYS_ADMIN (run the daemon "
                       "privileged, as the upstream DaemonSet "
                       "does): ",
                       what));
    }
    return absl::InternalError(what);
  }
  return result;
}

}  // namespace nvdp::mps
