// mount-shm without mounting anything: the size rule, the mount call, the
// privilege error.
#include "mps/shm.h"

#include <sys/mount.h>

#include <cerrno>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

TEST(MpsShmSizeTest, HalfOfMemTotal) {
  EXPECT_EQ(ShmSize("MemTotal:       16318480 kB\nMemFree:         1000 kB\n"), "8159240k");
  EXPECT_EQ(ShmSize("MemFree: 1 kB\nMemTotal:\t1048577 kB\n"), "524288k");
}

TEST(MpsShmSizeTest, FallsBackWhenUnreadable) {
  EXPECT_EQ(ShmSize(""), "65536k");
  EXPECT_EQ(ShmSize("MemTotal: lots kB\n"), "65536k");
}

class MpsMountShmTest : public ::testing::Test {
 protected:
  MpsMountShmTest() {
    testing::WriteFile(dir_.path() + "/meminfo", "MemTotal: 2000 kB\n");
    testing::WriteFile(dir_.path() + "/mountinfo", "22 1 0:21 / /proc rw,nosuid - proc proc rw\n");
  }
  absl::StatusOr<ShmMount> Mount(MountFunction fn) {
    return MountShm(dir_.path() + "/mps", dir_.path() + "/meminfo", dir_.path() + "/mountinfo",
                    std::move(fn));
  }
  TempDir dir_;
};

TEST_F(MpsMountShmTest, MountsATmpfsOfHalfTheMemory) {
  std::string call;
  auto result = Mount([&](const char* source, const char* target, const char* fstype,
                          unsigned long flags, const void* data) {
    call = std::string(source) + " " + target + " " + fstype + " " +
           static_cast<const char*>(data) +
           ((flags & MS_NOSUID) && (flags & MS_NODEV) ? " nosuid,nodev" : "");
    return 0;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->path, dir_.path() + "/mps/shm");
  EXPECT_EQ(result->size, "1000k");
  EXPECT_FALSE(result->already_mounted);
  EXPECT_EQ(call, "tmpfs " + dir_.path() + "/mps/shm tmpfs size=1000k,mode=1777 nosuid,nodev");
  EXPECT_TRUE(testing::Exists(dir_.path() + "/mps/shm"));
}

TEST_F(MpsMountShmTest, NotPrivilegedIsAClearError) {
  auto result = Mount([](const char*, const char*, const char*, unsigned long, const void*) {
    errno = EPERM;
    return -1;
  });
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(result.status()));
  EXPECT_THAT(std::string(result.status().message()),
              AllOf(HasSubstr("mount-shm needs CAP_SYS_ADMIN (run the daemon privileged"),
                    HasSubstr("Operation not permitted"), HasSubstr("/mps/shm")));
}

TEST_F(MpsMountShmTest, AlreadyMountedIsLeftAlone) {
  testing::WriteFile(dir_.path() + "/mountinfo",
                     "99 1 0:50 / " + dir_.path() + "/mps/shm rw,nosuid,nodev - tmpfs tmpfs rw\n");
  bool called = false;
  auto result = Mount([&](const char*, const char*, const char*, unsigned long, const void*) {
    called = true;
    return 0;
  });
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->already_mounted);
  EXPECT_FALSE(called);
}

TEST_F(MpsMountShmTest, RelativeRootIsRejected) {
  EXPECT_TRUE(absl::IsInvalidArgument(MountShm("run/mps").status()));
}

}  // namespace
}  // namespace nvdp::mps
