#include "configmgr/selection.h"

#include <unistd.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"

namespace nvdp::configmgr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseFallbacksTest, ParsesTheList) {
  auto parsed = ParseFallbacks(" named, single ,,empty");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(*parsed, ElementsAre(Fallback::kNamed, Fallback::kSingle, Fallback::kEmpty));
  EXPECT_THAT(*ParseFallbacks(""), ElementsAre());
}

TEST(ParseFallbacksTest, RejectsUnknownItems) {
  auto parsed = ParseFallbacks("named,first");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("\"first\""));
}

TEST(SelectConfigTest, TheLabelWins) {
  auto s = SelectConfig("b", {.default_config = "a"}, {"a", "b"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "b");
  EXPECT_EQ(s->reason, "label");
}

TEST(SelectConfigTest, ALabelNamingAMissingConfigIsAnErrorNamingTheChoices) {
  auto s = SelectConfig("c", {.default_config = "a"}, {"a", "b"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("\"c\""));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("available: a, b"));
}

TEST(SelectConfigTest, AnUnsetOrEmptyLabelUsesTheDefault) {
  for (const std::optional<std::string>& label :
       {std::optional<std::string>(), std::optional<std::string>("")}) {
    auto s = SelectConfig(label, {.default_config = "b"}, {"a", "b"});
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->name, "b");
    EXPECT_EQ(s->reason, "default config");
  }
}

TEST(SelectConfigTest, AMissingDefaultIsAnError) {
  auto s = SelectConfig(std::nullopt, {.default_config = "z"}, {"a"});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("\"z\""));
}

TEST(SelectConfigTest, WithoutADefaultASingleConfigIsUsed) {
  auto s = SelectConfig(std::nullopt, {}, {"only"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "only");
  EXPECT_EQ(s->reason, "single config");
}

TEST(SelectConfigTest, SeveralConfigsAndNoDefaultIsAnErrorUnlessEmptyIsAllowed) {
  auto s = SelectConfig(std::nullopt, {}, {"a", "b"});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("no fallback strategy applies"));

  s = SelectConfig(std::nullopt,
                   {.default_config = "", .fallbacks = {Fallback::kNamed, Fallback::kEmpty}},
                   {"a", "b"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, std::nullopt);
  EXPECT_EQ(s->reason, "empty fallback");
}

TEST(SelectConfigTest, TheOrderOfStrategiesCounts) {
  // "single" before "named": the single config wins over the default.
  auto s = SelectConfig(std::nullopt,
                        {.default_config = "x", .fallbacks = {Fallback::kSingle, Fallback::kNamed}},
                        {"only"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "only");
  // Without "named" the default is not used.
  s = SelectConfig(std::nullopt, {.default_config = "a", .fallbacks = {Fallback::kEmpty}},
                   {"a", "b"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, std::nullopt);
}

TEST(ListConfigsTest, ListsFilesAndSymlinksSkippingDotEntriesAndDirectories) {
  mps::testing::TempDir tmp;
  const std::string dir = tmp.path();
  // The layout of a mounted ConfigMap: ..data -> ..<timestamp>/, <key> -> ..data/<key>.
  std::filesystem::create_directory(dir + "/..2024_01_01");
  mps::testing::WriteFile(dir + "/..2024_01_01/b", "b");
  mps::testing::WriteFile(dir + "/..2024_01_01/a", "a");
  std::filesystem::create_directory_symlink("..2024_01_01", dir + "/..data");
  std::filesystem::create_symlink("..data/a", dir + "/a");
  std::filesystem::create_symlink("..data/b", dir + "/b");
  mps::testing::WriteFile(dir + "/c", "c");
  std::filesystem::create_directory(dir + "/subdir");
  std::filesystem::create_symlink("missing", dir + "/dangling");

  auto names = ListConfigs(dir);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre("a", "b", "c"));
}

TEST(ListConfigsTest, AMissingDirectoryIsNotFound) {
  auto names = ListConfigs("/nonexistent/configs");
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace nvdp::configmgr
