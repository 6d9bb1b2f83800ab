// File handles (name_to_handle_at / open_by_handle_at): a name-independent
// way back to an inode, so a crash journal can reach an inode whose names
// changed after it was written.
#include <fcntl.h>

#include <cstring>
#include <memory>

#include "vefs.h"

namespace vefs {

namespace {

// The JS side keeps a handle as one opaque Buffer holding the kernel's
// struct file_handle as is (handle_bytes, handle_type, f_handle).
Napi::Value NameToHandleAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dirfd = ArgInt32(info, 0);
  std::string path = ArgString(info, 1);
  int flags = ArgInt32(info, 2);
  size_t size = sizeof(file_handle) + MAX_HANDLE_SZ;
  std::unique_ptr<char[]> buf(new char[size]());
  auto* fh = reinterpret_cast<file_handle*>(buf.get());
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (RetryEintr([&] { return name_to_handle_at(dirfd, path.c_str(), fh, &mount_id, flags); }) < 0) {
    ThrowErrno(env, "name_to_handle_at", &path);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", Napi::Buffer<char>::Copy(env, buf.get(), sizeof(file_handle) + fh->handle_bytes));
  o.Set("mountId", Napi::Number::New(env, mount_id));
  return o;
}

Napi::Value OpenByHandleAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int mount_fd = ArgInt32(info, 0);
  Napi::Buffer<uint8_t> handle = ArgBuffer(info, 1);
  int flags = ArgInt32(info, 2) | O_CLOEXEC;
  file_handle header;
  if (handle.Length() < sizeof header) throw Napi::TypeError::New(env, "argument 1 is too short for a file handle");
  std::memcpy(&header, handle.Data(), sizeof header);
  if (header.handle_bytes > MAX_HANDLE_SZ || handle.Length() != sizeof header + header.handle_bytes) {
    throw Napi::TypeError::New(env, "argument 1 is not a file handle");
  }
  // A copy: the kernel wants the struct aligned, a Buffer's bytes need not be.
  std::unique_ptr<char[]> buf(new char[handle.Length()]);
  std::memcpy(buf.get(), handle.Data(), handle.Length());
  int fd = RetryEintr([&] {
    return open_by_handle_at(mount_fd, reinterpret_cast<file_handle*>(buf.get()), flags);
  });
  if (fd < 0) ThrowErrno(env, "open_by_handle_at");
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitHandle(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "nameToHandleAt", NameToHandleAt);
  SetFunction(exports, "openByHandleAt", OpenByHandleAt);
}

}  // namespace vefs
