// Calls that create, remove or rename directory entries.
#include <fcntl.h>
#include <linux/limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vefs.h"

namespace vefs {

namespace {

Napi::Value MkdirAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  mode_t mode = ArgUint32(info, 2);
  if (RetryEintr([&] { return mkdirat(dirfd, path.c_str(), mode); }) < 0) {
    ThrowErrno(info.Env(), "mkdirat", &path);
  }
  return info.Env().Undefined();
}

Napi::Value MknodAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  mode_t mode = ArgUint32(info, 2);
  dev_t rdev = ArgBigUint64(info, 3);
  if (RetryEintr([&] { return mknodat(dirfd, path.c_str(), mode, rdev); }) < 0) {
    ThrowErrno(info.Env(), "mknodat", &path);
  }
  return info.Env().Undefined();
}

Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  std::string target = ArgString(info, 0);
  int dirfd = ArgInt32(info, 1);
  std::string path = ArgString(info, 2);
  if (RetryEintr([&] { return symlinkat(target.c_str(), dirfd, path.c_str()); }) < 0) {
    ThrowErrno(info.Env(), "symlinkat", &target, &path);
  }
  return info.Env().Undefined();
}

Napi::Value ReadlinkAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  // Linux caps symlink targets below PATH_MAX, so one buffer always fits.
  char buf[PATH_MAX];
  ssize_t n = RetryEintr([&] { return readlinkat(dirfd, path.c_str(), buf, sizeof buf); });
  if (n < 0) ThrowErrno(info.Env(), "readlinkat", &path);
  return ByteString(info.Env(), buf, static_cast<size_t>(n));
}

Napi::Value LinkAt(const Napi::CallbackInfo& info) {
  int olddirfd = ArgInt32(info, 0);
  std::string oldpath = ArgString(info, 1);
  int newdirfd = ArgInt32(info, 2);
  std::string newpath = ArgString(info, 3);
  int flags = ArgInt32(info, 4);
  if (RetryEintr([&] {
        return linkat(olddirfd, oldpath.c_str(), newdirfd, newpath.c_str(), flags);
      }) < 0) {
    ThrowErrno(info.Env(), "linkat", &oldpath, &newpath);
  }
  return info.Env().Undefined();
}

Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  int flags = ArgInt32(info, 2);
  if (RetryEintr([&] { return unlinkat(dirfd, path.c_str(), flags); }) < 0) {
    ThrowErrno(info.Env(), "unlinkat", &path);
  }
  return info.Env().Undefined();
}

Napi::Value RenameAt2(const Napi::CallbackInfo& info) {
  int olddirfd = ArgInt32(info, 0);
  std::string oldpath = ArgString(info, 1);
  int newdirfd = ArgInt32(info, 2);
  std::string newpath = ArgString(info, 3);
  unsigned flags = ArgUint32(info, 4);
  if (RetryEintr([&] {
        return renameat2(olddirfd, oldpath.c_str(), newdirfd, newpath.c_str(), flags);
      }) < 0) {
    ThrowErrno(info.Env(), "renameat2", &oldpath, &newpath);
  }
  return info.Env().Undefined();
}

}  // namespace

void InitNames(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "mkdirat", MkdirAt);
  SetFunction(exports, "mknodat", MknodAt);
  SetFunction(exports, "symlinkat", SymlinkAt);
  SetFunction(exports, "readlinkat", ReadlinkAt);
  SetFunction(exports, "linkat", LinkAt);
  SetFunction(exports, "unlinkat", UnlinkAt);
  SetFunction(exports, "renameat2", RenameAt2);

  VEFS_CONSTANT(constants, RENAME_NOREPLACE);
  VEFS_CONSTANT(constants, RENAME_EXCHANGE);
  VEFS_CONSTANT(constants, RENAME_WHITEOUT);
}

}  // namespace vefs
