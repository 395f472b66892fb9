// RootLock: one mps-control-daemon per MPS root.
#include "mps/root_lock.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::HasSubstr;

TEST(RootLockTest, SecondHolderIsRefusedNamingTheFirstUntilItReleases) {
  testing::TempDir dir;
  const std::string root = dir.path() + "/mps";  // created on demand
  auto first = RootLock::TryAcquire(root);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->path(), root + "/.lock");

  // flock locks belong to the open file, so a second open in this process conflicts as another
  // process would.
  auto second = RootLock::TryAcquire(root);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("another mps-control-daemon (pid ", ::getpid(), ") holds ",
                                     root, "/.lock")));

  first->reset();
  EXPECT_TRUE(RootLock::TryAcquire(root).ok());
}

}  // namespace
}  // namespace nvdp::mps
