#include "configmgr/apply.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"

namespace nvdp::configmgr {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// nullopt when the file does not exist; an error when it exists but cannot be read.
absl::StatusOr<std::optional<std::string>> ReadIfExists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::optional<std::string>();
    return absl::InternalError(absl::StrCat("cannot read ", path));
  }
  return std::optional<std::string>(std::string(std::istreambuf_iterator<char>(in), {}));
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::filesystem::path target(path);
  std::filesystem::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  std::string temp = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  std::vector<char> pattern(temp.begin(), temp.end());
  pattern.push_back('\0');
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) return Errno("creating a temp file next to " + path);
  temp = pattern.data();
  absl::Status status;
  size_t done = 0;
  while (status.ok() && done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = Errno("writing " + temp);
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (status.ok() && ::fchmod(fd, 0644) != 0) status = Errno("chmod " + temp);
  if (status.ok() && ::fsync(fd) != 0) status = Errno("fsync " + temp);
  if (::close(fd) != 0 && status.ok()) status = Errno("closing " + temp);
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = Errno("renaming " + temp + " to " + path);
  }
  if (!status.ok()) ::unlink(temp.c_str());
  return status;
}

absl::StatusOr<ApplyResult> ConfigApplier::Apply(const std::optional<std::string>& label) {
  auto available = ListConfigs(options_.srcdir);
  if (!available.ok()) return available.status();
  auto selection = SelectConfig(label, options_.selection, *available);
  if (!selection.ok()) return selection.status();

  std::string content;
  if (selection->name.has_value()) {
    const std::string source = options_.srcdir + "/" + *selection->name;
    auto read = ReadIfExists(source);
    if (!read.ok()) return read.status();
    if (!read->has_value()) {
      return absl::NotFoundError(absl::StrCat("config ", source, " disappeared"));
    }
    content = std::move(**read);
  }
  auto current = ReadIfExists(options_.dst);
  if (!current.ok()) return current.status();

  ApplyResult result;
  result.selection = *std::move(selection);
  if (current->has_value() && **current == content) return result;
  if (absl::Status s = WriteFileAtomically(options_.dst, content); !s.ok()) return s;
  result.written = true;
  if (options_.send_signal && signaler_ != nullptr) {
    auto signalled = signaler_->SignalAll(options_.process_to_signal, options_.signal);
    if (signalled.ok()) {
      result.signalled = *signalled;
    } else {
      result.signal_status = signalled.status();
    }
  }
  return result;
}

}  // namespace nvdp::configmgr
