// stat via statx (64-bit device numbers and nanosecond times) and fstatfs.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "vefs.h"

namespace vefs {

namespace {

Napi::Object ToObject(Napi::Env env, const struct statx& st) {
  auto num = [&](double v) { return Napi::Number::New(env, v); };
  auto big = [&](uint64_t v) { return Napi::BigInt::New(env, v); };
  Napi::Object o = Napi::Object::New(env);
  // makedev gives the same encoding as st_dev/st_rdev from stat(2).
  o.Set("dev", big(makedev(st.stx_dev_major, st.stx_dev_minor)));
  o.Set("ino", big(st.stx_ino));
  o.Set("mode", num(st.stx_mode));
  o.Set("nlink", num(st.stx_nlink));
  o.Set("uid", num(st.stx_uid));
  o.Set("gid", num(st.stx_gid));
  o.Set("rdev", big(makedev(st.stx_rdev_major, st.stx_rdev_minor)));
  o.Set("size", num(static_cast<double>(st.stx_size)));
  o.Set("blksize", num(st.stx_blksize));
  o.Set("blocks", num(static_cast<double>(st.stx_blocks)));
  o.Set("atimeSec", num(static_cast<double>(st.stx_atime.tv_sec)));
  o.Set("atimeNsec", num(st.stx_atime.tv_nsec));
  o.Set("mtimeSec", num(static_cast<double>(st.stx_mtime.tv_sec)));
  o.Set("mtimeNsec", num(st.stx_mtime.tv_nsec));
  o.Set("ctimeSec", num(static_cast<double>(st.stx_ctime.tv_sec)));
  o.Set("ctimeNsec", num(st.stx_ctime.tv_nsec));
  return o;
}

Napi::Value StatAt(Napi::Env env, int dirfd, const std::string& path, int flags,
                   const char* syscall_name) {
  struct statx st;
  if (RetryEintr([&] {
        return statx(dirfd, path.c_str(), flags | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &st);
      }) < 0) {
    ThrowErrno(env, syscall_name, path.empty() ? nullptr : &path);
  }
  return ToObject(env, st);
}

Napi::Value FstatAt(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  return StatAt(info.Env(), dirfd, path, ArgInt32(info, 2), "fstatat");
}

// Through statx as well, so both calls report the same full-width fields.
Napi::Value Fstat(const Napi::CallbackInfo& info) {
  return StatAt(info.Env(), ArgInt32(info, 0), "", AT_EMPTY_PATH, "fstat");
}

Napi::Value Fstatfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0);
  struct statfs st;
  if (RetryEintr([&] { return fstatfs(fd, &st); }) < 0) ThrowErrno(env, "fstatfs");
  auto num = [&](double v) { return Napi::Number::New(env, v); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", num(static_cast<double>(st.f_type)));
  o.Set("bsize", num(static_cast<double>(st.f_bsize)));
  o.Set("frsize", num(static_cast<double>(st.f_frsize)));
  o.Set("blocks", num(static_cast<double>(st.f_blocks)));
  o.Set("bfree", num(static_cast<double>(st.f_bfree)));
  o.Set("bavail", num(static_cast<double>(st.f_bavail)));
  o.Set("files", num(static_cast<double>(st.f_files)));
  o.Set("ffree", num(static_cast<double>(st.f_ffree)));
  o.Set("namemax", num(static_cast<double>(st.f_namelen)));
  o.Set("flags", num(static_cast<double>(st.f_flags)));
  // Word order as the kernel's u64_to_fsid(): val[0] holds the low half.
  uint64_t fsid = static_cast<uint32_t>(st.f_fsid.__val[0]) |
                  static_cast<uint64_t>(static_cast<uint32_t>(st.f_fsid.__val[1])) << 32;
  o.Set("fsid", Napi::BigInt::New(env, fsid));
  return o;
}

}  // namespace

void InitStat(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "fstatat", FstatAt);
  SetFunction(exports, "fstat", Fstat);
  SetFunction(exports, "fstatfs", Fstatfs);

  VEFS_CONSTANT(constants, S_IFMT);
  VEFS_CONSTANT(constants, S_IFREG);
  VEFS_CONSTANT(constants, S_IFDIR);
  VEFS_CONSTANT(constants, S_IFLNK);
  VEFS_CONSTANT(constants, S_IFCHR);
  VEFS_CONSTANT(constants, S_IFBLK);
  VEFS_CONSTANT(constants, S_IFIFO);
  VEFS_CONSTANT(constants, S_IFSOCK);
}

}  // namespace vefs
