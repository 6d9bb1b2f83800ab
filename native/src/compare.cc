// CompareWithMaster: are the first `size` bytes of several open files equal
// to those of one master? Compared in C buffers on a worker thread (for
// prepareLinks, link.cc), so a unify run's byte-for-byte checks neither copy
// into JS memory nor hold up the event loop, and the master is read once for
// all its targets.
//
// hashFiles: the XXH128 of whole files below a ROOT, a batch per worker
// thread, so that two batches in flight hash on both cores while the event
// loop goes on; the digest is xxhash-addon's (XXH3 128-bit, seed 0,
// canonical byte order), so an index built by either matches the other.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "vefs.h"

namespace vefs {

ssize_t ReadFull(int fd, char* buf, size_t len, off_t pos) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, pos + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? -1 : static_cast<ssize_t>(done);
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

int OpenBeneath(int root, const char* path) {
  open_how how{};
  how.flags = O_RDONLY | O_NOFOLLOW | O_NOATIME | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(RetryEintr([&] { return syscall(SYS_openat2, root, path, &how, sizeof how); }));
}

// While a lease is being broken F_GETLEASE answers the type it is broken to.
bool LeaseHeld(int fd) { return fcntl(fd, F_GETLEASE) == F_RDLCK; }

// Each chunk of the master is read once, then the same chunk of every
// target still in the running.
int CompareWithMaster(int master, const std::vector<int>& targets, int64_t size, bool leases,
                      std::vector<int>& outcomes, int64_t& read) {
  thread_local std::unique_ptr<char[]> mbuf(new char[kCompareChunk]), tbuf(new char[kCompareChunk]);
  size_t running = 0;
  for (int o : outcomes) running += o == kSame;
  for (int64_t pos = 0; pos < size && running > 0;) {
    size_t want = static_cast<size_t>(std::min<int64_t>(kCompareChunk, size - pos));
    ssize_t nm = ReadFull(master, mbuf.get(), want, pos);
    if (nm < 0) return errno;
    read += nm;
    bool masterShort = static_cast<size_t>(nm) != want;
    bool masterLease = !leases || LeaseHeld(master);
    for (size_t i = 0; i < targets.size(); i++) {
      if (outcomes[i] != kSame) continue;
      int o = kSame;
      if (masterShort) {
        o = kShort;
      } else {
        ssize_t nt = ReadFull(targets[i], tbuf.get(), want, pos);
        if (nt < 0) return errno;
        read += nt;
        if (static_cast<size_t>(nt) != want) o = kShort;
        else if (std::memcmp(mbuf.get(), tbuf.get(), want) != 0) o = kDiffers;
        else if (!masterLease || (leases && !LeaseHeld(targets[i]))) o = kLeaseBroken;
      }
      if (o != kSame) {
        outcomes[i] = o;
        running--;
      }
    }
    pos += static_cast<int64_t>(want);
  }
  return 0;
}

namespace {

// One file to hash: where it is and the version the walk saw.
struct HashItem {
  int root;
  std::string path;
  uint64_t dev, ino;
  int64_t size, mtimeSec, mtimeNsec;
};

bool SameVersion(const struct stat& st, const HashItem& f) {
  return makedev(major(st.st_dev), minor(st.st_dev)) == f.dev && st.st_ino == f.ino && st.st_size == f.size &&
         st.st_mtim.tv_sec == f.mtimeSec && st.st_mtim.tv_nsec == f.mtimeNsec;
}

class HashWorker : public Napi::AsyncWorker {
 public:
  HashWorker(Napi::Env env, std::vector<HashItem> items)
      : Napi::AsyncWorker(env, "hashFiles"), deferred_(Napi::Promise::Deferred::New(env)),
        items_(std::move(items)), digests_(items_.size()), ok_(items_.size(), false) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  // Opened beneath its ROOT as unify opens everything (no symlinks, no '..',
  // no other mount); a file that changed or went away since the walk gets no
  // hash (it waits for the next run), any other failure fails the batch.
  void Execute() override {
    std::unique_ptr<char[]> buf(new char[kCompareChunk]);
    XXH3_state_t state;
    for (size_t i = 0; i < items_.size(); i++) {
      const HashItem& f = items_[i];
      int fd = OpenBeneath(f.root, f.path.c_str());
      if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR || errno == EXDEV || errno == EAGAIN) continue;
        fail_ = {errno, "openat2"};
        return;
      }
      struct stat st;
      bool ok = fstat(fd, &st) == 0 && SameVersion(st, f);
      XXH3_128bits_reset(&state);
      for (int64_t pos = 0; ok && pos < f.size;) {
        size_t want = static_cast<size_t>(std::min<int64_t>(kCompareChunk, f.size - pos));
        ssize_t n = ReadFull(fd, buf.get(), want, pos);
        if (n < 0) {
          fail_ = {errno, "pread"};
          close(fd);
          return;
        }
        if (static_cast<size_t>(n) != want) ok = false;
        XXH3_128bits_update(&state, buf.get(), static_cast<size_t>(n));
        read_ += n;
        pos += n;
      }
      // A write during the read shows in mtime; such a hash describes no version of the file.
      ok = ok && fstat(fd, &st) == 0 && SameVersion(st, f);
      close(fd);
      if (!ok) continue;
      XXH128_canonicalFromHash(&digests_[i], XXH3_128bits_digest(&state));
      ok_[i] = true;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (fail_.err) {
      deferred_.Reject(ErrnoError(env, fail_.err, fail_.syscall).Value());
      return;
    }
    Napi::Array hashes = Napi::Array::New(env, items_.size());
    for (size_t i = 0; i < items_.size(); i++) {
      hashes.Set(i, ok_[i] ? Napi::Buffer<uint8_t>::Copy(env, digests_[i].digest, sizeof digests_[i].digest).As<Napi::Value>()
                           : env.Null());
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("hashes", hashes);
    o.Set("bytesRead", Napi::Number::New(env, static_cast<double>(read_)));
    deferred_.Resolve(o);
  }

  Napi::Promise::Deferred deferred_;
  std::vector<HashItem> items_;
  std::vector<XXH128_canonical_t> digests_;
  std::vector<bool> ok_;
  Failure fail_;
  int64_t read_ = 0;
};

// hashFiles(roots: Int32Array, paths: string[], ids: BigUint64Array (dev, ino), versions: Float64Array (size, mtime s, ns)).
Napi::Value HashFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsArray() || !info[2].IsTypedArray() || !info[3].IsTypedArray()) {
    throw Napi::TypeError::New(env, "hashFiles(roots: Int32Array, paths: string[], ids: BigUint64Array, versions: Float64Array)");
  }
  Napi::Int32Array roots = info[0].As<Napi::Int32Array>();
  std::vector<std::string> paths = ArgStrings(info, 1);
  Napi::TypedArrayOf<uint64_t> ids = info[2].As<Napi::TypedArrayOf<uint64_t>>();
  Napi::Float64Array versions = info[3].As<Napi::Float64Array>();
  size_t n = roots.ElementLength();
  if (paths.size() != n || ids.ElementLength() != 2 * n || versions.ElementLength() != 3 * n) {
    throw Napi::RangeError::New(env, "hashFiles: arrays of different lengths");
  }
  std::vector<HashItem> items(n);
  for (size_t i = 0; i < n; i++) {
    items[i] = {roots[i], std::move(paths[i]), ids[2 * i], ids[2 * i + 1], static_cast<int64_t>(versions[3 * i]),
                static_cast<int64_t>(versions[3 * i + 1]), static_cast<int64_t>(versions[3 * i + 2])};
  }
  auto* worker = new HashWorker(env, std::move(items));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitCompare(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "hashFiles", HashFiles);
}

}  // namespace vefs
