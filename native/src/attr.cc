// Inode attribute changes: mode, owner, times.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vefs.h"

// glibc 2.36 predates fchmodat2 (Linux 6.6), the only chmod that honours
// AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH.
#ifndef SYS_fchmodat2
#if defined(__x86_64__) || defined(__aarch64__)
#define SYS_fchmodat2 452
#else
#error "SYS_fchmodat2 unknown for this architecture"
#endif
#endif

namespace vefs {

namespace {

Napi::Value FchmodAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  mode_t mode = ArgUint32(info, 2);
  int flags = ArgInt32(info, 3);
  if (RetryEintr([&] { return syscall(SYS_fchmodat2, dirfd, path.c_str(), mode, flags); }) < 0) {
    ThrowErrno(info.Env(), "fchmodat2", &path);
  }
  return info.Env().Undefined();
}

Napi::Value FchownAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  // -1 leaves the id unchanged, as in chown(2).
  auto uid = static_cast<uid_t>(ArgInteger(info, 2, -1, UINT32_MAX));
  auto gid = static_cast<gid_t>(ArgInteger(info, 3, -1, UINT32_MAX));
  int flags = ArgInt32(info, 4);
  if (RetryEintr([&] { return fchownat(dirfd, path.c_str(), uid, gid, flags); }) < 0) {
    ThrowErrno(info.Env(), "fchownat", &path);
  }
  return info.Env().Undefined();
}

Napi::Value UtimensAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  timespec times[2];
  times[0].tv_sec = ArgInt64(info, 2);
  times[0].tv_nsec = ArgInt32(info, 3);
  times[1].tv_sec = ArgInt64(info, 4);
  times[1].tv_nsec = ArgInt32(info, 5);
  int flags = ArgInt32(info, 6);
  if (RetryEintr([&] { return utimensat(dirfd, path.c_str(), times, flags); }) < 0) {
    ThrowErrno(info.Env(), "utimensat", &path);
  }
  return info.Env().Undefined();
}

}  // namespace

void InitAttr(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "fchmodat", FchmodAt);
  SetFunction(exports, "fchownat", FchownAt);
  SetFunction(exports, "utimensat", UtimensAt);

  VEFS_CONSTANT(constants, UTIME_NOW);
  VEFS_CONSTANT(constants, UTIME_OMIT);
}

}  // namespace vefs
