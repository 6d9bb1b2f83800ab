// Inode flags (chattr): FS_IOC_GETFLAGS / FS_IOC_SETFLAGS.
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "vefs.h"

namespace vefs {

namespace {

// The ioctl numbers say long, but every filesystem reads and writes an int;
// passing a long would leave half of it undefined on 64-bit.
Napi::Value GetFlags(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int flags = 0;
  if (RetryEintr([&] { return ioctl(fd, FS_IOC_GETFLAGS, &flags); }) < 0) {
    ThrowErrno(info.Env(), "ioctl");
  }
  return Napi::Number::New(info.Env(), static_cast<uint32_t>(flags));
}

Napi::Value SetFlags(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int flags = static_cast<int>(ArgUint32(info, 1));
  if (RetryEintr([&] { return ioctl(fd, FS_IOC_SETFLAGS, &flags); }) < 0) {
    ThrowErrno(info.Env(), "ioctl");
  }
  return info.Env().Undefined();
}

}  // namespace

void InitFlags(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "getflags", GetFlags);
  SetFunction(exports, "setflags", SetFlags);

  VEFS_CONSTANT(constants, FS_IMMUTABLE_FL);
  VEFS_CONSTANT(constants, FS_APPEND_FL);
  VEFS_CONSTANT(constants, FS_NOATIME_FL);
}

}  // namespace vefs
