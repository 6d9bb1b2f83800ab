// Module entry point and the errno error shared by every call.
#include <fcntl.h>

#include <cctype>
#include <cstring>

#include "vefs.h"

namespace vefs {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall,
                       const std::string* path, const std::string* dest) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : "E" + std::to_string(err);
  // strerrordesc_np, unlike strerror, is thread-safe and locale-free.
  const char* desc = strerrordesc_np(err);
  std::string text = desc ? desc : "unknown error " + std::to_string(err);
  // Node's messages are lower-case ("no such file or directory").
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));

  std::string message = code + ": " + text + ", " + syscall;
  if (path) message += " '" + *path + "'";
  if (dest) message += " -> '" + *dest + "'";

  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (path) error.Set("path", ByteString(env, path->data(), path->size()));
  if (dest) error.Set("dest", ByteString(env, dest->data(), dest->size()));
  return error;
}

}  // namespace vefs

namespace {

// Outside namespace vefs: NODE_API_MODULE pastes the name into an identifier.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace vefs;
  Napi::Object constants = Napi::Object::New(env);
  VEFS_CONSTANT(constants, AT_FDCWD);
  VEFS_CONSTANT(constants, AT_SYMLINK_NOFOLLOW);
  VEFS_CONSTANT(constants, AT_REMOVEDIR);
  VEFS_CONSTANT(constants, AT_EMPTY_PATH);

  InitAttr(exports, constants);
  InitCloser(exports, constants);
  InitCompare(exports, constants);
  InitCopy(exports, constants);
  InitDir(exports, constants);
  InitFlags(exports, constants);
  InitFuseDev(exports, constants);
  InitHandle(exports, constants);
  InitIo(exports, constants);
  InitLink(exports, constants);
  InitLock(exports, constants);
  InitMount(exports, constants);
  InitNames(exports, constants);
  InitOpen(exports, constants);
  InitScan(exports, constants);
  InitStat(exports, constants);
  InitXattr(exports, constants);

  exports.Set("constants", constants);
  return exports;
}

}  // namespace

NODE_API_MODULE(vefs_native, Init)
