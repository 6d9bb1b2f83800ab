// File size, space and offset calls, and fsync off the JS thread.
#include <fcntl.h>
#include <unistd.h>

#include "vefs.h"

namespace vefs {

namespace {

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  off_t length = ArgInt64(info, 1);
  if (RetryEintr([&] { return ftruncate(fd, length); }) < 0) ThrowErrno(info.Env(), "ftruncate");
  return info.Env().Undefined();
}

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int mode = ArgInt32(info, 1);
  off_t offset = ArgInt64(info, 2);
  off_t length = ArgInt64(info, 3);
  if (RetryEintr([&] { return fallocate(fd, mode, offset, length); }) < 0) {
    ThrowErrno(info.Env(), "fallocate");
  }
  return info.Env().Undefined();
}

Napi::Value Lseek(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  off_t offset = ArgInt64(info, 1);
  int whence = ArgInt32(info, 2);
  off_t result = RetryEintr([&] { return lseek(fd, offset, whence); });
  if (result < 0) ThrowErrno(info.Env(), "lseek");
  return Napi::Number::New(info.Env(), static_cast<double>(result));
}

Napi::Value Fsync(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  return RunAsync(info.Env(), "vefs.fsync", [fd] {
    return RetryEintr([&] { return fsync(fd); }) < 0 ? Failure{errno, "fsync"} : Failure{};
  });
}

// Synchronous: it runs once at the end of a unify run and in the rare
// journal repair, never on a FUSE server's own mount.
Napi::Value Syncfs(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  if (RetryEintr([&] { return syncfs(fd); }) < 0) ThrowErrno(info.Env(), "syncfs");
  return info.Env().Undefined();
}

}  // namespace

void InitIo(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "ftruncate", Ftruncate);
  SetFunction(exports, "fallocate", Fallocate);
  SetFunction(exports, "lseek", Lseek);
  SetFunction(exports, "fsync", Fsync);
  SetFunction(exports, "syncfs", Syncfs);

  VEFS_CONSTANT(constants, SEEK_SET);
  VEFS_CONSTANT(constants, SEEK_CUR);
  VEFS_CONSTANT(constants, SEEK_END);
  VEFS_CONSTANT(constants, SEEK_DATA);
  VEFS_CONSTANT(constants, SEEK_HOLE);
  VEFS_CONSTANT(constants, FALLOC_FL_KEEP_SIZE);
  VEFS_CONSTANT(constants, FALLOC_FL_PUNCH_HOLE);
  VEFS_CONSTANT(constants, FALLOC_FL_ZERO_RANGE);
}

}  // namespace vefs
