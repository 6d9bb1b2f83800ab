// scanDir: one directory's entries with the statx of every regular file (and
// of every entry whose type getdents does not know), in one call and a few
// typed arrays, so a walk of a million files is not a million calls that
// each build an object. statNames: the same for chosen names, for a walk that
// knows most of a directory already (unify's rerun).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

// Per entry in `stats`: mode, nlink, uid, gid, size, mtime s, mtime ns, ctime s, ctime ns, 1 when the
// inode carries the immutable flag (statx reports it without an open and an ioctl), else 0, and for a
// regular file 1 when it has any extended attribute, else 0.
constexpr size_t kStatFields = 11;
// A name that went away between getdents (or the last walk) and statx.
constexpr uint8_t kGone = 0xff;

struct Entry {
  std::string name;
  uint8_t type;
  bool stated;
  struct statx st;
  bool xattrs = false;
};

// listxattrat(2), Linux 6.13; the same number on every architecture that has it. Older headers lack it.
#if !defined(SYS_listxattrat) && (defined(__x86_64__) || defined(__aarch64__))
#define SYS_listxattrat 465
#endif

// Whether a file has any extended attribute, asked by name: most have none, and then unify need not
// read them (a call from JS per file, through a /proc/self/fd path, cost a full walk about a tenth).
// Without listxattrat (older kernels) the same question goes through that path. When unsure (an
// error other than no support), yes: the caller then reads them and meets the error itself.
bool HasXattrs(int dirfd, const std::string& name) {
  static bool noListxattrat = false;
  ssize_t n = -1;
#ifdef SYS_listxattrat
  if (!noListxattrat) {
    n = syscall(SYS_listxattrat, dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW, nullptr, 0);
    if (n < 0 && errno == ENOSYS) noListxattrat = true;
  }
#else
  noListxattrat = true;
#endif
  if (noListxattrat) {
    std::string path = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
    n = llistxattr(path.c_str(), nullptr, 0);
  }
  if (n >= 0) return n > 0;
  return errno != ENOTSUP && errno != ENOENT;
}

void StatEntry(Napi::Env env, int fd, Entry& e) {
  int r = RetryEintr([&] {
    return statx(fd, e.name.c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &e.st);
  });
  if (r < 0) {
    // A path of several names (unify's rerun stats subdirectories from its ROOT) is also gone when a
    // directory on the way is no longer one.
    if (errno != ENOENT && errno != ENOTDIR) ThrowErrno(env, "statx", &e.name);
    e.type = kGone;
    return;
  }
  e.stated = true;
  e.type = static_cast<uint8_t>(IFTODT(e.st.stx_mode));
  if (e.type == DT_REG) e.xattrs = HasXattrs(fd, e.name);
}

// names, types, stats and ids (dev, ino per entry) as scanDir documents them (native/index.ts).
Napi::Object Packed(Napi::Env env, const std::vector<Entry>& entries) {
  size_t count = entries.size();
  Napi::Array names = Napi::Array::New(env, count);
  Napi::Uint8Array types = Napi::Uint8Array::New(env, count);
  Napi::Float64Array stats = Napi::Float64Array::New(env, count * kStatFields);
  napi_value idsValue;
  void* idsData = nullptr;
  napi_value idsBuffer;
  napi_create_arraybuffer(env, count * 2 * sizeof(uint64_t), &idsData, &idsBuffer);
  napi_create_typedarray(env, napi_biguint64_array, count * 2, idsBuffer, 0, &idsValue);
  auto* ids = static_cast<uint64_t*>(idsData);
  for (size_t i = 0; i < count; i++) {
    const Entry& e = entries[i];
    names.Set(static_cast<uint32_t>(i), ByteString(env, e.name.data(), e.name.size()));
    types[i] = e.type;
    if (!e.stated) continue;
    const struct statx& st = e.st;
    double* s = &stats[i * kStatFields];
    s[0] = st.stx_mode;
    s[1] = st.stx_nlink;
    s[2] = st.stx_uid;
    s[3] = st.stx_gid;
    s[4] = static_cast<double>(st.stx_size);
    s[5] = static_cast<double>(st.stx_mtime.tv_sec);
    s[6] = st.stx_mtime.tv_nsec;
    s[7] = static_cast<double>(st.stx_ctime.tv_sec);
    s[8] = st.stx_ctime.tv_nsec;
    s[9] = (st.stx_attributes_mask & st.stx_attributes & STATX_ATTR_IMMUTABLE) != 0 ? 1 : 0;
    s[10] = e.xattrs ? 1 : 0;
    ids[i * 2] = makedev(st.stx_dev_major, st.stx_dev_minor);
    ids[i * 2 + 1] = st.stx_ino;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("names", names);
  out.Set("types", types);
  out.Set("stats", stats);
  out.Set("ids", Napi::Value(env, idsValue));
  return out;
}

// scanDir(fd, statFiles = true): with statFiles false only entries whose type getdents does not know.
Napi::Value ScanDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0);
  bool statFiles = info.Length() < 2 || info[1].ToBoolean();
  std::vector<Entry> entries;
  ForEachDirent(env, fd, [&](const DirentView& d) { entries.push_back({d.name, d.type, false, {}}); });
  for (Entry& e : entries) {
    if (e.type == DT_UNKNOWN || (statFiles && e.type == DT_REG)) StatEntry(env, fd, e);
  }
  return Packed(env, entries);
}

// statNames(fd, names): the statx of these names in the directory fd, packed as scanDir packs them.
Napi::Value StatNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0);
  std::vector<Entry> entries;
  for (std::string& name : ArgStrings(info, 1)) entries.push_back({std::move(name), DT_UNKNOWN, false, {}});
  for (Entry& e : entries) StatEntry(env, fd, e);
  return Packed(env, entries);
}

}  // namespace

void InitScan(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "scanDir", ScanDir);
  SetFunction(exports, "statNames", StatNames);
}

}  // namespace vefs
