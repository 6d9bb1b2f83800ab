// Advisory locks and leases: flock(2) for the host-wide unify locks, and
// F_SETLEASE/F_GETLEASE so unify can skip a file that another process has
// open for writing and learn when a writer wants it while unify looks at it.
#include <fcntl.h>
#include <sys/file.h>

#include "vefs.h"

namespace vefs {

namespace {

// A blocking flock would stall the JS thread for as long as another process
// holds the lock, so the waiting happens on the thread pool.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int op = ArgInt32(info, 1);
  return RunAsync(info.Env(), "flock", [fd, op]() -> Failure {
    if (RetryEintr([&] { return flock(fd, op); }) < 0) return {errno, "flock"};
    return {};
  });
}

// Only for calls that cannot wait (LOCK_NB, LOCK_UN): a synchronous caller,
// such as a server's start-up, must never be parked on another holder.
Napi::Value FlockSync(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int op = ArgInt32(info, 1);
  if (!(op & LOCK_NB) && (op & ~LOCK_NB) != LOCK_UN) {
    throw Napi::TypeError::New(info.Env(), "flockSync needs LOCK_NB or LOCK_UN; use flock to wait");
  }
  if (RetryEintr([&] { return flock(fd, op); }) < 0) ThrowErrno(info.Env(), "flock");
  return info.Env().Undefined();
}

Napi::Value SetLease(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int type = ArgInt32(info, 1);
  if (RetryEintr([&] { return fcntl(fd, F_SETLEASE, type); }) < 0) ThrowErrno(info.Env(), "fcntl");
  return info.Env().Undefined();
}

// While a lease is being broken this answers the type it is being broken
// to (F_UNLCK for a writer), not the type still held.
Napi::Value GetLease(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  int type = RetryEintr([&] { return fcntl(fd, F_GETLEASE); });
  if (type < 0) ThrowErrno(info.Env(), "fcntl");
  return Napi::Number::New(info.Env(), type);
}

}  // namespace

void InitLock(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "flock", Flock);
  SetFunction(exports, "flockSync", FlockSync);
  SetFunction(exports, "setlease", SetLease);
  SetFunction(exports, "getlease", GetLease);

  VEFS_CONSTANT(constants, LOCK_SH);
  VEFS_CONSTANT(constants, LOCK_EX);
  VEFS_CONSTANT(constants, LOCK_NB);
  VEFS_CONSTANT(constants, LOCK_UN);
  VEFS_CONSTANT(constants, F_RDLCK);
  VEFS_CONSTANT(constants, F_WRLCK);
  VEFS_CONSTANT(constants, F_UNLCK);
}

}  // namespace vefs
