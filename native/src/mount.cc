// umount2(2), and private read-only noatime views of a tree (open_tree +
// mount_setattr) through which VEFS reads template layers.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

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

// The same on the thread pool, for the process that serves the mount: the
// kernel may send it requests (flushes, releases) while the call is in
// progress, and the event loop must be free to answer them.
Napi::Value UmountAsync(const Napi::CallbackInfo& info) {
  std::string target = ArgString(info, 0);
  int flags = ArgInt32(info, 1);
  return RunAsync(info.Env(), "vefs.umount", [target, flags] {
    return RetryEintr([&] { return umount2(target.c_str(), flags); }) < 0 ? Failure{errno, "umount2"} : Failure{};
  });
}

// A detached clone of the mount tree at path, made read-only and noatime: no
// write and no atime update (readlink, getdents) through it can reach the
// tree, whatever the original mount's options are. Attached nowhere, it is
// invisible to everyone else and goes away with its last descriptor.
Napi::Value OpenTreeReadonly(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  int fd = RetryEintr([&] {
    return static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, path.c_str(),
                                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  });
  if (fd < 0) ThrowErrno(info.Env(), "open_tree", &path);
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME;
  attr.attr_clr = MOUNT_ATTR__ATIME;  // the whole atime field, as mount_setattr(2) requires
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(info.Env(), err, "mount_setattr", &path);
  }
  return Napi::Number::New(info.Env(), fd);
}

}  // namespace

void InitMount(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "umount2", Umount2);
  SetFunction(exports, "umountAsync", UmountAsync);
  SetFunction(exports, "openTreeReadonly", OpenTreeReadonly);

  VEFS_CONSTANT(constants, MNT_DETACH);
  VEFS_CONSTANT(constants, MNT_FORCE);
}

}  // namespace vefs
