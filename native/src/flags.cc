// Inode flags (chattr): FS_IOC_GETFLAGS / FS_IOC_SETFLAGS; and, for the
// mutable section (src/unify/section.ts), the state of many inodes and their
// flags set in one call each: a section of 256 new names had ten calls per
// unified inode it opened up, a third of adding a VE's time on the event loop.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <memory>

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

// The file handle as NameToHandleAt's Buffer holds it (handle.cc), in hex; null where there are none.
Napi::Value HandleHex(Napi::Env env, int fd) {
  size_t size = sizeof(file_handle) + MAX_HANDLE_SZ;
  std::unique_ptr<unsigned char[]> buf(new unsigned char[size]());
  auto* fh = reinterpret_cast<file_handle*>(buf.get());
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) < 0) return env.Null();
  static const char kHex[] = "0123456789abcdef";
  size_t len = sizeof(file_handle) + fh->handle_bytes;
  std::string hex(2 * len, '0');
  for (size_t k = 0; k < len; k++) {
    hex[2 * k] = kHex[buf[k] >> 4];
    hex[2 * k + 1] = kHex[buf[k] & 15];
  }
  return Napi::String::New(env, hex);
}

// inodeStates(fds, handles): per fd its nlink, ctime (s, ns) and inode flags
// (-1: none on this filesystem) in facts, dev and ino in ids, and with
// handles its file handle in hex (null where the filesystem has none).
Napi::Value InodeStates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> fds = ArgInt32Array(info, 0);
  if (!info[1].IsBoolean()) throw Napi::TypeError::New(env, "argument 1 must be a boolean");
  bool handles = info[1].As<Napi::Boolean>().Value();
  Napi::Float64Array facts = Napi::Float64Array::New(env, 4 * fds.size());
  Napi::TypedArrayOf<uint64_t> ids = Napi::TypedArrayOf<uint64_t>::New(env, 2 * fds.size(), napi_biguint64_array);
  Napi::Array hex = Napi::Array::New(env, handles ? fds.size() : 0);
  for (size_t k = 0; k < fds.size(); k++) {
    struct statx st;
    if (RetryEintr([&] { return statx(fds[k], "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &st); }) < 0) {
      ThrowErrno(env, "statx");
    }
    int flags = 0;
    if (RetryEintr([&] { return ioctl(fds[k], FS_IOC_GETFLAGS, &flags); }) < 0) {
      if (!NoFlags(errno)) ThrowErrno(env, "ioctl");
      flags = -1;
    }
    double* f = &facts.Data()[4 * k];
    f[0] = st.stx_nlink;
    f[1] = static_cast<double>(st.stx_ctime.tv_sec);
    f[2] = st.stx_ctime.tv_nsec;
    f[3] = flags < 0 ? -1 : static_cast<double>(static_cast<uint32_t>(flags));
    ids.Data()[2 * k] = makedev(st.stx_dev_major, st.stx_dev_minor);
    ids.Data()[2 * k + 1] = st.stx_ino;
    if (handles) hex.Set(static_cast<uint32_t>(k), HandleHex(env, fds[k]));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("facts", facts);
  o.Set("ids", ids);
  o.Set("handles", handles ? hex.As<Napi::Value>() : env.Null());
  return o;
}

// setflagsEach(fds, flags: Float64Array): FS_IOC_SETFLAGS on each fd whose
// flags are not negative, every one tried; the first failure is returned
// (null when none), so a caller restoring flags restores all it can.
Napi::Value SetFlagsEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> fds = ArgInt32Array(info, 0);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::Float64Array>().ElementLength() != fds.size()) {
    throw Napi::TypeError::New(env, "argument 1 must be a Float64Array of one value per fd");
  }
  Napi::Float64Array wanted = info[1].As<Napi::Float64Array>();
  int failed = 0;
  for (size_t k = 0; k < fds.size(); k++) {
    if (wanted[k] < 0) continue;
    int flags = static_cast<int>(static_cast<uint32_t>(wanted[k]));
    if (RetryEintr([&] { return ioctl(fds[k], FS_IOC_SETFLAGS, &flags); }) < 0 && !failed) failed = errno;
  }
  return failed ? ErrnoError(env, failed, "ioctl").Value() : env.Null();
}

}  // namespace

void InitFlags(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "getflags", GetFlags);
  SetFunction(exports, "setflags", SetFlags);
  SetFunction(exports, "inodeStates", InodeStates);
  SetFunction(exports, "setflagsEach", SetFlagsEach);

  VEFS_CONSTANT(constants, FS_IMMUTABLE_FL);
  VEFS_CONSTANT(constants, FS_APPEND_FL);
  VEFS_CONSTANT(constants, FS_NOATIME_FL);
}

}  // namespace vefs
