// Whole-directory listing with getdents64.
#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "vefs.h"

namespace vefs {

namespace {

constexpr size_t kBufferSize = 64 * 1024;

bool IsDotOrDotDot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

Napi::Value Getdents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0);
  // Keys made once per call rather than once per entry and property.
  Napi::String nameKey = Napi::String::New(env, "name");
  Napi::String inoKey = Napi::String::New(env, "ino");
  Napi::String typeKey = Napi::String::New(env, "type");
  Napi::Array entries = Napi::Array::New(env);
  uint32_t count = 0;
  ForEachDirent(env, fd, [&](const DirentView& d) {
    // A scope per entry keeps the live handle count flat however large
    // the directory; the array alone keeps the entries alive.
    Napi::HandleScope scope(env);
    Napi::Object entry = Napi::Object::New(env);
    entry.Set(nameKey, ByteString(env, d.name, std::strlen(d.name)));
    entry.Set(inoKey, Napi::BigInt::New(env, d.ino));
    entry.Set(typeKey, Napi::Number::New(env, d.type));
    entries.Set(count++, entry);
  });
  return entries;
}

}  // namespace

void ForEachDirent(Napi::Env env, int fd, const std::function<void(const DirentView&)>& fn) {
  // Rewind so every call lists the whole directory, even on a descriptor
  // that was read before.
  if (lseek(fd, 0, SEEK_SET) < 0) ThrowErrno(env, "lseek");
  std::unique_ptr<char[]> buf(new char[kBufferSize]);
  for (;;) {
    ssize_t n = RetryEintr([&] { return getdents64(fd, buf.get(), kBufferSize); });
    if (n < 0) ThrowErrno(env, "getdents64");
    if (n == 0) break;
    for (ssize_t pos = 0; pos < n;) {
      auto* d = reinterpret_cast<const dirent64*>(buf.get() + pos);
      pos += d->d_reclen;
      if (IsDotOrDotDot(d->d_name)) continue;
      fn({d->d_name, static_cast<uint64_t>(d->d_ino), d->d_type});
    }
  }
}

void InitDir(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "getdents", Getdents);

  VEFS_CONSTANT(constants, DT_UNKNOWN);
  VEFS_CONSTANT(constants, DT_FIFO);
  VEFS_CONSTANT(constants, DT_CHR);
  VEFS_CONSTANT(constants, DT_DIR);
  VEFS_CONSTANT(constants, DT_BLK);
  VEFS_CONSTANT(constants, DT_REG);
  VEFS_CONSTANT(constants, DT_LNK);
  VEFS_CONSTANT(constants, DT_SOCK);
}

}  // namespace vefs
