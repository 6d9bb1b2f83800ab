// openat, openat2 and close, with the O_* and RESOLVE_* constants.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vefs.h"

namespace vefs {

namespace {

// O_CLOEXEC is always added, as libuv does: a descriptor leaking into a
// spawned VE process would pin files and mounts of the union.
Napi::Value OpenAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  int flags = ArgInt32(info, 2) | O_CLOEXEC;
  mode_t mode = ArgUint32(info, 3);
  int fd = RetryEintr([&] { return openat(dirfd, path.c_str(), flags, mode); });
  if (fd < 0) ThrowErrno(info.Env(), "openat", &path);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value OpenAt2(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  uint32_t flags = ArgUint32(info, 2) | O_CLOEXEC;
  open_how how{};
  how.flags = flags;
  // openat2 rejects a mode without O_CREAT/O_TMPFILE where openat ignores it;
  // callers pass one mode everywhere, so keep openat's meaning.
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) how.mode = ArgUint32(info, 3);
  how.resolve = ArgUint32(info, 4);
  int fd = static_cast<int>(
      RetryEintr([&] { return syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how); }));
  if (fd < 0) ThrowErrno(info.Env(), "openat2", &path);
  return Napi::Number::New(info.Env(), fd);
}

// No EINTR retry: Linux releases the descriptor even when close reports
// EINTR, so a retry could close a descriptor another thread just opened.
Napi::Value Close(const Napi::CallbackInfo& info) {
  if (close(ArgInt32(info, 0)) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close");
  return info.Env().Undefined();
}

}  // namespace

void InitOpen(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "openat", OpenAt);
  SetFunction(exports, "openat2", OpenAt2);
  SetFunction(exports, "close", Close);

  VEFS_CONSTANT(constants, O_RDONLY);
  VEFS_CONSTANT(constants, O_WRONLY);
  VEFS_CONSTANT(constants, O_RDWR);
  VEFS_CONSTANT(constants, O_CREAT);
  VEFS_CONSTANT(constants, O_EXCL);
  VEFS_CONSTANT(constants, O_TRUNC);
  VEFS_CONSTANT(constants, O_APPEND);
  VEFS_CONSTANT(constants, O_DIRECTORY);
  VEFS_CONSTANT(constants, O_NOFOLLOW);
  VEFS_CONSTANT(constants, O_NOATIME);
  VEFS_CONSTANT(constants, O_PATH);
  VEFS_CONSTANT(constants, O_CLOEXEC);
  VEFS_CONSTANT(constants, O_NONBLOCK);
  VEFS_CONSTANT(constants, O_TMPFILE);
  VEFS_CONSTANT(constants, RESOLVE_BENEATH);
  VEFS_CONSTANT(constants, RESOLVE_NO_SYMLINKS);
  VEFS_CONSTANT(constants, RESOLVE_NO_MAGICLINKS);
  VEFS_CONSTANT(constants, RESOLVE_NO_XDEV);
  VEFS_CONSTANT(constants, RESOLVE_IN_ROOT);
}

}  // namespace vefs
