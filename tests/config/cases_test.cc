// Data-driven config tests over tests/config/cases/ and examples/:
//   cases/valid/*.{yaml,json}    load with no errors (and no warnings unless a
//   sibling
//                                <name>.warnings lists them exactly);
//   cases/invalid/<name>.{yaml,json} produce exactly the messages of
//   <name>.errors (order-free; the
//                                token {file} stands for the file's path), and
//                                the warnings of <name>.warnings when that file
//                                exists;
//   examples/*.{yaml,json}       load with no errors and no warnings.
// Every case goes through LoadConfigReport with --config-file, as the daemon
// loads it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "config/loader.h"
#include "test_util.h"

namespace nvdp::config {
namespace {

namespace fs = std::filesystem;
using testing::ReadLines;
using testing::SourceDir;

std::vector<fs::path> ConfigFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

Report LoadFile(const fs::path& file) {
  FlagOverrides cli;
  cli.config_file = file.string();
  return LoadConfigReport(cli, FlagOverrides{});
}

std::vector<std::string> Expected(const fs::path& file, const fs::path& expectation) {
  std::vector<std::string> lines;
  if (!fs::exists(expectation)) return lines;
  for (const auto& line : ReadLines(expectation)) {
    lines.push_back(absl::StrReplaceAll(line, {{"{file}", file.string()}}));
  }
  return lines;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(ConfigCases, ValidCasesLoadCleanly) {
  const auto files = ConfigFiles(SourceDir() / "tests/config/cases/valid");
  ASSERT_GE(files.size(), 5u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const Report report = LoadFile(file);
    EXPECT_THAT(report.errors, ::testing::IsEmpty()) << absl::StrJoin(report.errors, "\n");
    auto warnings = Expected(file, fs::path(file).replace_extension(".warnings"));
    EXPECT_EQ(Sorted(report.warnings), Sorted(warnings)) << absl::StrJoin(report.warnings, "\n");
  }
}

TEST(ConfigCases, InvalidCasesGiveExactlyTheirErrors) {
  const auto files = ConfigFiles(SourceDir() / "tests/config/cases/invalid");
  ASSERT_GE(files.size(), 25u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const auto errors_file = fs::path(file).replace_extension(".errors");
    ASSERT_TRUE(fs::exists(errors_file)) << "missing " << errors_file;
    const auto expected = Expected(file, errors_file);
    ASSERT_FALSE(expected.empty()) << errors_file << " is empty";
    const Report report = LoadFile(file);
    EXPECT_EQ(Sorted(report.errors), Sorted(expected)) << "actual:\n"
                                                       << absl::StrJoin(report.errors, "\n");
    const auto warnings_file = fs::path(file).replace_extension(".warnings");
    if (fs::exists(warnings_file)) {
      EXPECT_EQ(Sorted(report.warnings), Sorted(Expected(file, warnings_file)))
          << "actual:\n"
          << absl::StrJoin(report.warnings, "\n");
    }
    // The status form carries the same messages, one per line.
    auto status = LoadConfig(FlagOverrides{.config_file = file.string()}, FlagOverrides{});
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(status.status().message()), absl::StrJoin(report.errors, "\n"));
  }
}

TEST(ConfigCases, EveryExpectationFileHasACase) {
  const fs::path dir = SourceDir() / "tests/config/cases/invalid";
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (ext != ".errors" && ext != ".warnings") continue;
    const bool has_case = fs::exists(fs::path(entry.path()).replace_extension(".yaml")) ||
                          fs::exists(fs::path(entry.path()).replace_extension(".json"));
    EXPECT_TRUE(has_case) << entry.path() << " has no .yaml/.json case";
  }
  std::set<std::string> stems;
  for (const auto& file : ConfigFiles(dir)) {
    EXPECT_TRUE(stems.insert(file.stem().string()).second)
        << file << ": another case has the same name";
  }
}

TEST(ConfigCases, ExamplesLoadWithoutErrorsOrWarnings) {
  const auto files = ConfigFiles(SourceDir() / "examples");
  ASSERT_GE(files.size(), 5u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const Report report = LoadFile(file);
    EXPECT_THAT(report.errors, ::testing::IsEmpty()) << absl::StrJoin(report.errors, "\n");
    EXPECT_THAT(report.warnings, ::testing::IsEmpty()) << absl::StrJoin(report.warnings, "\n");
  }
}

}  // namespace
}  // namespace nvdp::config
