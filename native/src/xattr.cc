// Extended attributes, by path (never following a final symlink) or by fd.
#include <sys/xattr.h>

#include <cstring>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

// Most values (overlay metadata, ACLs) are small, so one call into a stack
// buffer usually suffices; otherwise ask for the size and retry, looping in
// case the value grows between the two calls.
constexpr size_t kStackSize = 4096;

template <typename Call>
ssize_t ReadSized(Call call, std::vector<char>& heap, const char*& data, char* stack) {
  ssize_t n = RetryEintr([&] { return call(stack, kStackSize); });
  data = stack;
  while (n < 0 && errno == ERANGE) {
    ssize_t size = RetryEintr([&] { return call(nullptr, 0); });
    if (size < 0) return size;
    heap.resize(static_cast<size_t>(size));
    n = RetryEintr([&] { return call(heap.data(), heap.size()); });
    data = heap.data();
  }
  return n;
}

template <typename Call>
Napi::Value GetValue(Napi::Env env, Call call, const char* syscall_name, const std::string* path) {
  char stack[kStackSize];
  std::vector<char> heap;
  const char* data;
  ssize_t n = ReadSized(call, heap, data, stack);
  if (n < 0) {
    if (errno == ENODATA) return env.Null();
    ThrowErrno(env, syscall_name, path);
  }
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(data),
                                     static_cast<size_t>(n));
}

template <typename Call>
Napi::Value ListNames(Napi::Env env, Call call, const char* syscall_name, const std::string* path) {
  char stack[kStackSize];
  std::vector<char> heap;
  const char* data;
  ssize_t n = ReadSized(call, heap, data, stack);
  if (n < 0) ThrowErrno(env, syscall_name, path);
  Napi::Array names = Napi::Array::New(env);
  uint32_t count = 0;
  for (const char *p = data, *end = data + n; p < end;) {
    size_t len = strnlen(p, static_cast<size_t>(end - p));
    if (len > 0) names.Set(count++, ByteString(env, p, len));
    p += len + 1;
  }
  return names;
}

Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  std::string name = ArgString(info, 1);
  return GetValue(
      info.Env(),
      [&](char* buf, size_t size) { return lgetxattr(path.c_str(), name.c_str(), buf, size); },
      "lgetxattr", &path);
}

Napi::Value Fgetxattr(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  std::string name = ArgString(info, 1);
  return GetValue(
      info.Env(), [&](char* buf, size_t size) { return fgetxattr(fd, name.c_str(), buf, size); },
      "fgetxattr", nullptr);
}

Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  return ListNames(
      info.Env(), [&](char* buf, size_t size) { return llistxattr(path.c_str(), buf, size); },
      "llistxattr", &path);
}

Napi::Value Flistxattr(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  return ListNames(
      info.Env(), [&](char* buf, size_t size) { return flistxattr(fd, buf, size); }, "flistxattr",
      nullptr);
}

Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  std::string name = ArgString(info, 1);
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2);
  int flags = ArgInt32(info, 3);
  if (RetryEintr([&] {
        return lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), flags);
      }) < 0) {
    ThrowErrno(info.Env(), "lsetxattr", &path);
  }
  return info.Env().Undefined();
}

Napi::Value Fsetxattr(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  std::string name = ArgString(info, 1);
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2);
  int flags = ArgInt32(info, 3);
  if (RetryEintr([&] {
        return fsetxattr(fd, name.c_str(), value.Data(), value.Length(), flags);
      }) < 0) {
    ThrowErrno(info.Env(), "fsetxattr");
  }
  return info.Env().Undefined();
}

Napi::Value Lremovexattr(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  std::string name = ArgString(info, 1);
  if (RetryEintr([&] { return lremovexattr(path.c_str(), name.c_str()); }) < 0) {
    ThrowErrno(info.Env(), "lremovexattr", &path);
  }
  return info.Env().Undefined();
}

Napi::Value Fremovexattr(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  std::string name = ArgString(info, 1);
  if (RetryEintr([&] { return fremovexattr(fd, name.c_str()); }) < 0) {
    ThrowErrno(info.Env(), "fremovexattr");
  }
  return info.Env().Undefined();
}

}  // namespace

void InitXattr(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "lgetxattr", Lgetxattr);
  SetFunction(exports, "lsetxattr", Lsetxattr);
  SetFunction(exports, "llistxattr", Llistxattr);
  SetFunction(exports, "lremovexattr", Lremovexattr);
  SetFunction(exports, "fgetxattr", Fgetxattr);
  SetFunction(exports, "fsetxattr", Fsetxattr);
  SetFunction(exports, "flistxattr", Flistxattr);
  SetFunction(exports, "fremovexattr", Fremovexattr);

  VEFS_CONSTANT(constants, XATTR_CREATE);
  VEFS_CONSTANT(constants, XATTR_REPLACE);
}

}  // namespace vefs
