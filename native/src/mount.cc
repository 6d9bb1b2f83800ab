// umount2(2) and its flags.
#include <sys/mount.h>

#include "vefs.h"

namespace vefs {

namespace {

Napi::Value Umount2(const Napi::CallbackInfo& info) {
  std::string target = ArgString(info, 0);
  int flags = ArgInt32(info, 1);
  if (RetryEintr([&] { return umount2(target.c_str(), flags); }) < 0) {
    ThrowErrno(info.Env(), "umount2", &target);
  }
  return info.Env().Undefined();
}

}  // namespace

void InitMount(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "umount2", Umount2);

  VEFS_CONSTANT(constants, MNT_DETACH);
  VEFS_CONSTANT(constants, MNT_FORCE);
}

}  // namespace vefs
