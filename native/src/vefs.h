// Shared helpers of the vefs addon: errno errors, argument checks, EINTR
// retries, async work, and each concern's registration function.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vefs {

// A JS Error shaped like Node's fs errors ("ENOENT: no such file or
// directory, openat 'x'") with positive errno, code and syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall,
                       const std::string* path = nullptr,
                       const std::string* dest = nullptr);

[[noreturn]] inline void ThrowErrno(Napi::Env env, const char* syscall,
                                    const std::string* path = nullptr,
                                    const std::string* dest = nullptr) {
  throw ErrnoError(env, errno, syscall, path, dest);
}

template <typename F>
auto RetryEintr(F call) {
  decltype(call()) r;
  do {
    r = call();
  } while (r == -1 && errno == EINTR);
  return r;
}

// Paths and names are byte strings on the JS side: one character per byte
// (latin1), so a name that is not valid UTF-8 crosses unchanged. ArgString
// reads them so; ByteString makes them.
inline Napi::String ByteString(Napi::Env env, const char* data, size_t len) {
  napi_value v;
  napi_create_string_latin1(env, data, len, &v);
  return Napi::String(env, v);
}

// One getdents64 entry, valid during the callback only.
struct DirentView {
  const char* name;
  uint64_t ino;
  uint8_t type;
};

// Calls fn for every entry of the directory open at fd but "." and "..",
// reading it whole with getdents64 from its start (dir.cc).
void ForEachDirent(Napi::Env env, int fd, const std::function<void(const DirentView&)>& fn);

// Opens a file below a ROOT as unify opens everything there: no symlinks, no
// '..' above it, no other mount; read-only, without touching its atime, never
// blocking on a FIFO (compare.cc). -1 with errno on failure.
int OpenBeneath(int root, const char* path);

// pread until len bytes or the end of the file; -1 with errno on failure.
ssize_t ReadFull(int fd, char* buf, size_t len, off_t pos);

// Whether the read lease on fd is still held (not being broken for a writer).
bool LeaseHeld(int fd);

// Outcomes of a byte comparison with a master (compare.cc).
enum CompareOutcome : int { kSame = 0, kDiffers = 1, kShort = 2, kLeaseBroken = 3 };

constexpr size_t kCompareChunk = 256 * 1024;

// Compares the first `size` bytes of every target whose outcome is kSame with
// the master's and sets its outcome; with leases, a lease on the master or a
// target that is being broken stops that target (kLeaseBroken). Adds the
// bytes read to `read`. 0, or the errno of a failed read.
int CompareWithMaster(int master, const std::vector<int>& targets, int64_t size, bool leases,
                      std::vector<int>& outcomes, int64_t& read);

// What a filesystem without inode flags answers FS_IOC_GETFLAGS with.
inline bool NoFlags(int err) { return err == ENOTTY || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL; }

// Argument readers throw a TypeError instead of letting a wrong type turn
// into fd 0 or an empty path.
int64_t ArgInteger(const Napi::CallbackInfo& info, size_t i, int64_t min, int64_t max);
int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i);
uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i);
int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i);
uint64_t ArgBigUint64(const Napi::CallbackInfo& info, size_t i);
std::string ArgString(const Napi::CallbackInfo& info, size_t i);
std::vector<std::string> ArgStrings(const Napi::CallbackInfo& info, size_t i);
std::vector<int> ArgInt32Array(const Napi::CallbackInfo& info, size_t i);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i);

// What a worker-thread job reports back; err == 0 means success.
struct Failure {
  int err = 0;
  const char* syscall = nullptr;
};

// Runs job on the libuv thread pool and settles the returned Promise on the
// JS thread, where the error object can be built.
Napi::Promise RunAsync(Napi::Env env, const char* name, std::function<Failure()> job);

inline void SetConstant(Napi::Object constants, const char* name, int64_t value) {
  constants.Set(name, Napi::Number::New(constants.Env(), static_cast<double>(value)));
}

#define VEFS_CONSTANT(constants, name) ::vefs::SetConstant(constants, #name, name)

inline void SetFunction(Napi::Object exports, const char* name, Napi::Function::Callback cb) {
  exports.Set(name, Napi::Function::New(exports.Env(), cb, name));
}

void InitAttr(Napi::Object exports, Napi::Object constants);
void InitCloser(Napi::Object exports, Napi::Object constants);
void InitCompare(Napi::Object exports, Napi::Object constants);
void InitCopy(Napi::Object exports, Napi::Object constants);
void InitDir(Napi::Object exports, Napi::Object constants);
void InitFlags(Napi::Object exports, Napi::Object constants);
void InitFuseDev(Napi::Object exports, Napi::Object constants);
void InitHandle(Napi::Object exports, Napi::Object constants);
void InitIo(Napi::Object exports, Napi::Object constants);
void InitLink(Napi::Object exports, Napi::Object constants);
void InitLock(Napi::Object exports, Napi::Object constants);
void InitMount(Napi::Object exports, Napi::Object constants);
void InitNames(Napi::Object exports, Napi::Object constants);
void InitOpen(Napi::Object exports, Napi::Object constants);
void InitScan(Napi::Object exports, Napi::Object constants);
void InitStat(Napi::Object exports, Napi::Object constants);
void InitXattr(Napi::Object exports, Napi::Object constants);

}  // namespace vefs
