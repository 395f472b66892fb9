// Helpers shared by the config tests: locating the source tree and temporary
// files. Not thread-safe (tests are single-threaded).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace nvdp::config::testing {

// The source tree: $NVDP_SOURCE_DIR if set, else the absolute path CMake compiled in
// (NVDP_TEST_SOURCE_DIR; __FILE__ may be relative under ccache's base_dir, which breaks when CTest
// runs the test from another directory), else the directory this file was built from.
inline std::filesystem::path SourceDir() {
  if (const char* dir = std::getenv("NVDP_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
#ifdef NVDP_TEST_SOURCE_DIR
  return NVDP_TEST_SOURCE_DIR;
#else
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
#endif
}

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Non-empty lines of a file, without trailing '\r'.
inline std::vector<std::string> ReadLines(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// A fresh directory removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "nvdp-config-XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes `text` to <dir>/<name> and returns the full path.
  std::string Write(const std::string& name, const std::string& text) const {
    const auto file = path_ / name;
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace nvdp::config::testing
