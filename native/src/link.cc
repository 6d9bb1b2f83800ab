// The system-call sequences of a unify link (src/unify/link.ts), run in C
// on the thread pool. Issued one by one from JS, the thirty-odd calls per
// new file (open, lease, flags, compare, link, rename, directory times,
// seal) kept the event loop's thread busy: adding a Debian minbase VE to
// eight unified ones spent ~2 s of its 2.8 s there. The rules (what is
// refused, what counts as changed, the predicate, the section's flag rule)
// stay in JS; these calls run the sequences and report what they saw.
//
// prepareLinks: steps 1 to 3 of link.ts for a master and some targets, for
//   several groups per call (one async call per group cost the event loop
//   ~40 us of a new VE's ~300 us per file).
// replaceNames: step 4 (and the seal of step 5) inside a mutable section,
//   synchronously (see Replacer).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

// Numbers per item in prepareLinks' facts (native/index.ts PREP_FIELDS).
enum PrepField : int {
  kErr, kFd, kNlink, kMode, kUid, kGid, kSize, kMtimeSec, kMtimeNsec, kAtimeSec, kAtimeNsec,
  kFlags, kLeaseErr, kHasXattrs, kVerdict, kNowSize, kNowMtimeSec, kNowMtimeNsec, kPrepFields
};

// Errors that mean a name or its directory changed under us: reported, not thrown.
bool MovedAway(int err) { return err == ENOENT || err == ELOOP || err == ENOTDIR || err == EXDEV; }

bool Statx(int dirfd, const char* name, int flags, struct statx& st) {
  return RetryEintr([&] { return statx(dirfd, name, flags | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &st); }) == 0;
}

uint64_t DevOf(const struct statx& st) { return makedev(st.stx_dev_major, st.stx_dev_minor); }

// One group of a prepareLinks call: its items are paths[first, first + count).
struct PrepGroup {
  int master;
  size_t first, count;
  int64_t size;
};

class PrepareWorker : public Napi::AsyncWorker {
 public:
  PrepareWorker(Napi::Env env, std::vector<PrepGroup> groups, std::vector<int> roots, std::vector<std::string> paths, bool lease)
      : Napi::AsyncWorker(env, "prepareLinks"), deferred_(Napi::Promise::Deferred::New(env)), groups_(std::move(groups)),
        roots_(std::move(roots)), paths_(std::move(paths)), lease_(lease),
        facts_(paths_.size() * kPrepFields, -1), ids_(paths_.size() * 2, 0) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  double* Row(size_t i) { return &facts_[i * kPrepFields]; }

  // Opened beneath its ROOT (OpenBeneath); then its stat, flags, whether it
  // has xattrs, and the read lease. false: the whole call fails.
  bool Open(size_t i) {
    double* row = Row(i);
    int fd = OpenBeneath(roots_[i], paths_[i].c_str());
    if (fd < 0) {
      // EAGAIN: openat2 met a concurrent rename below the ROOT.
      if (MovedAway(errno) || errno == EAGAIN) {
        row[kErr] = errno;
        return true;
      }
      return Fail(errno, "openat2");
    }
    row[kErr] = 0;
    row[kFd] = fd;
    struct statx st;
    if (!Statx(fd, "", AT_EMPTY_PATH, st)) return Fail(errno, "statx");
    ids_[2 * i] = DevOf(st);
    ids_[2 * i + 1] = st.stx_ino;
    row[kNlink] = st.stx_nlink;
    row[kMode] = st.stx_mode;
    row[kUid] = st.stx_uid;
    row[kGid] = st.stx_gid;
    row[kSize] = static_cast<double>(st.stx_size);
    row[kMtimeSec] = static_cast<double>(st.stx_mtime.tv_sec);
    row[kMtimeNsec] = st.stx_mtime.tv_nsec;
    row[kAtimeSec] = static_cast<double>(st.stx_atime.tv_sec);
    row[kAtimeNsec] = st.stx_atime.tv_nsec;
    int flags = 0;
    if (RetryEintr([&] { return ioctl(fd, FS_IOC_GETFLAGS, &flags); }) == 0) {
      row[kFlags] = static_cast<uint32_t>(flags);
    } else if (!NoFlags(errno)) {
      return Fail(errno, "ioctl");
    }
    ssize_t listed = flistxattr(fd, nullptr, 0);
    if (listed < 0 && errno != ENOTSUP) return Fail(errno, "flistxattr");
    row[kHasXattrs] = listed > 0;
    row[kLeaseErr] = 0;
    // EAGAIN: someone has the file open for writing.
    if (lease_ && RetryEintr([&] { return fcntl(fd, F_SETLEASE, F_RDLCK); }) < 0) {
      if (errno != EAGAIN) return Fail(errno, "fcntl");
      row[kLeaseErr] = EAGAIN;
    }
    return true;
  }

  bool Fail(int err, const char* syscall) {
    fail_ = {err, syscall};
    return false;
  }

  void Execute() override {
    for (const PrepGroup& g : groups_) {
      if (!Prepare(g)) return CloseOnFailure();
    }
  }

  bool Prepare(const PrepGroup& g) {
    size_t first = g.first;
    size_t end = g.first + g.count;
    int master = g.master;
    if (master < 0) {
      // The group's first item is the master: without it, the targets are not even opened.
      if (!Open(first)) return false;
      if (Row(first)[kErr] != 0 || Row(first)[kLeaseErr] != 0) return true;
      master = static_cast<int>(Row(first)[kFd]);
      first++;
    }
    std::vector<int> fds;
    std::vector<size_t> at;
    for (size_t i = first; i < end; i++) {
      if (!Open(i)) return false;
      const double* row = Row(i);
      // Only a file that opened, is leased and has the group's size is worth reading.
      if (row[kErr] == 0 && row[kLeaseErr] == 0 && row[kSize] == static_cast<double>(g.size)) {
        fds.push_back(static_cast<int>(row[kFd]));
        at.push_back(i);
      }
    }
    std::vector<int> outcomes(fds.size(), kSame);
    if (int err = CompareWithMaster(master, fds, g.size, lease_, outcomes, read_)) return Fail(err, "pread");
    // A write during the comparison shows in size or mtime.
    for (size_t k = 0; k < fds.size(); k++) {
      double* row = Row(at[k]);
      struct statx st;
      if (!Statx(fds[k], "", AT_EMPTY_PATH, st)) return Fail(errno, "statx");
      row[kVerdict] = outcomes[k];
      row[kNowSize] = static_cast<double>(st.stx_size);
      row[kNowMtimeSec] = static_cast<double>(st.stx_mtime.tv_sec);
      row[kNowMtimeNsec] = st.stx_mtime.tv_nsec;
    }
    return true;
  }

  // A call that fails leaves no descriptor open; otherwise every row with
  // err 0 holds one for the caller (also a refused master's).
  void CloseOnFailure() {
    for (size_t i = 0; i < paths_.size(); i++) {
      if (Row(i)[kErr] == 0) close(static_cast<int>(Row(i)[kFd]));
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (fail_.err) {
      deferred_.Reject(ErrnoError(env, fail_.err, fail_.syscall).Value());
      return;
    }
    Napi::Float64Array facts = Napi::Float64Array::New(env, facts_.size());
    std::copy(facts_.begin(), facts_.end(), facts.Data());
    Napi::TypedArrayOf<uint64_t> ids = Napi::TypedArrayOf<uint64_t>::New(env, ids_.size(), napi_biguint64_array);
    std::copy(ids_.begin(), ids_.end(), ids.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("facts", facts);
    o.Set("ids", ids);
    o.Set("bytesRead", Napi::Number::New(env, static_cast<double>(read_)));
    deferred_.Resolve(o);
  }

  Napi::Promise::Deferred deferred_;
  std::vector<PrepGroup> groups_;
  std::vector<int> roots_;
  std::vector<std::string> paths_;
  bool lease_;
  std::vector<double> facts_;
  std::vector<uint64_t> ids_;
  Failure fail_;
  int64_t read_ = 0;
};

// prepareLinks(groups: Float64Array (master, count, size per group), roots: Int32Array, paths: string[], lease).
Napi::Value PrepareLinks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[3].IsBoolean()) {
    throw Napi::TypeError::New(env, "prepareLinks(groups: Float64Array, roots: Int32Array, paths: string[], lease: boolean)");
  }
  Napi::Float64Array fields = info[0].As<Napi::Float64Array>();
  std::vector<int> roots = ArgInt32Array(info, 1);
  std::vector<std::string> paths = ArgStrings(info, 2);
  std::vector<PrepGroup> groups(fields.ElementLength() / 3);
  size_t items = 0;
  bool masterless = false;
  for (size_t k = 0; k < groups.size(); k++) {
    const double* f = &fields[3 * k];
    groups[k] = {static_cast<int>(f[0]), items, static_cast<size_t>(f[1]), static_cast<int64_t>(f[2])};
    // A group whose master is to be opened has it as its first item.
    masterless = masterless || (groups[k].master < 0 && groups[k].count == 0);
    items += groups[k].count;
  }
  if (fields.ElementLength() % 3 != 0 || paths.size() != roots.size() || items != paths.size() || masterless) {
    throw Napi::RangeError::New(env, "prepareLinks: the groups' counts, the roots and the paths do not match");
  }
  // The worker deletes itself once OnOK has run.
  auto* worker = new PrepareWorker(env, std::move(groups), std::move(roots), std::move(paths), info[3].As<Napi::Boolean>().Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Outcomes per name of replaceNames (native/index.ts REPLACE_*).
enum NameOutcome : int { kDone = 0, kChanged = 1, kFull = 2, kOtherMount = 3, kWriterWaiting = 4, kNotReached = 5 };

// Numbers per target in replaceNames' input, and per name in its stamps.
enum TargetField : int { kMaster, kTarget, kLeased, kSealFlags, kNames, kTargetFields };
enum StampField : int {
  kBeforeMtimeSec, kBeforeMtimeNsec, kBeforeCtimeSec, kBeforeCtimeNsec,
  kAfterMtimeSec, kAfterMtimeNsec, kAfterCtimeSec, kAfterCtimeNsec, kStampFields
};

struct Target {
  int master, fd;
  bool leased;
  int64_t sealFlags;
  size_t names;
  uint64_t dev, ino;
};

// Runs on the JS thread, inside the mutable section: on the thread pool it
// waited behind the closes that free replaced inodes (~115 us each on an ext4
// mounted with discard), and the section, lock held and flags off, with it
// (a full Debian run: windows of 105 ms on average instead of ~25).
class Replacer {
 public:
  Replacer(std::vector<Target> targets, std::vector<int> dirs, std::vector<std::string> names, std::string tmpPrefix,
           int64_t tmpStart)
      : targets_(std::move(targets)), dirs_(std::move(dirs)), names_(std::move(names)),
        tmpPrefix_(std::move(tmpPrefix)), tmpStart_(tmpStart), outcomes_(names_.size(), kNotReached),
        stamps_(names_.size() * kStampFields, 0), dirInos_(names_.size(), 0), gone_(targets_.size(), 0) {}

  void Run() {
    size_t n = 0;
    for (size_t k = 0; k < targets_.size(); n += targets_[k].names, k++) {
      const Target& t = targets_[k];
      // A writer waits for the master or the target: let it in, link another time.
      if (t.leased && (!LeaseHeld(t.master) || !LeaseHeld(t.fd))) {
        for (size_t j = 0; j < t.names; j++) outcomes_[n + j] = kWriterWaiting;
        continue;
      }
      for (size_t j = 0; j < t.names; j++) {
        if (!Replace(t, n + j)) return;
      }
      // Nameless now: a writer that opened it late must fail, not write into the void.
      struct statx st;
      if (!Statx(t.fd, "", AT_EMPTY_PATH, st)) {
        Fail(errno, "statx");
        return;
      }
      if (st.stx_nlink != 0) continue;
      gone_[k] = 1;
      int flags = static_cast<int>(t.sealFlags | FS_IMMUTABLE_FL);
      if (t.sealFlags >= 0 && t.sealFlags != flags && RetryEintr([&] { return ioctl(t.fd, FS_IOC_SETFLAGS, &flags); }) < 0) {
        Fail(errno, "ioctl");
        return;
      }
    }
  }

  Napi::Object Result(Napi::Env env) const {
    Napi::Int32Array outcomes = Napi::Int32Array::New(env, outcomes_.size());
    std::copy(outcomes_.begin(), outcomes_.end(), outcomes.Data());
    Napi::Float64Array stamps = Napi::Float64Array::New(env, stamps_.size());
    std::copy(stamps_.begin(), stamps_.end(), stamps.Data());
    Napi::TypedArrayOf<uint64_t> dirInos = Napi::TypedArrayOf<uint64_t>::New(env, dirInos_.size(), napi_biguint64_array);
    std::copy(dirInos_.begin(), dirInos_.end(), dirInos.Data());
    Napi::Uint8Array gone = Napi::Uint8Array::New(env, gone_.size());
    std::copy(gone_.begin(), gone_.end(), gone.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("outcomes", outcomes);
    o.Set("stamps", stamps);
    o.Set("dirInos", dirInos);
    o.Set("gone", gone);
    // What was done before a failure still counts: the caller records it, then throws.
    o.Set("error", fail_.err ? ErrnoError(env, fail_.err, fail_.syscall).Value() : env.Null());
    return o;
  }

 private:
  // One name: it must still show the target; a temporary link to the master
  // beside it is renamed over it, so the name is never missing and always
  // shows a whole file; the directory gets its times back (a VE did not
  // change it). false: stop (EMLINK, or a failure to report).
  bool Replace(const Target& t, size_t n) {
    int dir = dirs_[n];
    const char* name = names_[n].c_str();
    struct statx now;
    if (dir < 0) return Outcome(n, kChanged);
    if (!Statx(dir, name, AT_SYMLINK_NOFOLLOW, now)) return MovedAway(errno) ? Outcome(n, kChanged) : Fail(errno, "statx");
    if (now.stx_ino != t.ino || DevOf(now) != t.dev) return Outcome(n, kChanged);
    struct statx before;
    if (!Statx(dir, "", AT_EMPTY_PATH, before)) return Fail(errno, "statx");
    std::string tmp = tmpPrefix_ + std::to_string(tmpStart_ + static_cast<int64_t>(n));
    if (RetryEintr([&] { return linkat(t.master, "", dir, tmp.c_str(), AT_EMPTY_PATH); }) < 0) {
      // The master is full: the caller hands the rest over to this target (link.ts).
      if (errno == EMLINK) {
        outcomes_[n] = kFull;
        return false;
      }
      if (errno == EXDEV) return Outcome(n, kOtherMount);
      return MovedAway(errno) ? Outcome(n, kChanged) : Fail(errno, "linkat");
    }
    bool renamed = RetryEintr([&] { return renameat(dir, tmp.c_str(), dir, name); }) == 0;
    int renameErr = errno;
    if (!renamed) unlinkat(dir, tmp.c_str(), 0);
    // Back to the times before, unconditionally: a link and a rename always move them.
    struct timespec times[2] = {{before.stx_atime.tv_sec, before.stx_atime.tv_nsec},
                                {before.stx_mtime.tv_sec, before.stx_mtime.tv_nsec}};
    if (utimensat(dir, "", times, AT_EMPTY_PATH) < 0 && !MovedAway(errno)) return Fail(errno, "utimensat");
    if (!renamed) return MovedAway(renameErr) ? Outcome(n, kChanged) : Fail(renameErr, "renameat");
    struct statx after;
    if (!Statx(dir, "", AT_EMPTY_PATH, after)) return Fail(errno, "statx");
    double* s = &stamps_[n * kStampFields];
    s[kBeforeMtimeSec] = static_cast<double>(before.stx_mtime.tv_sec);
    s[kBeforeMtimeNsec] = before.stx_mtime.tv_nsec;
    s[kBeforeCtimeSec] = static_cast<double>(before.stx_ctime.tv_sec);
    s[kBeforeCtimeNsec] = before.stx_ctime.tv_nsec;
    s[kAfterMtimeSec] = static_cast<double>(after.stx_mtime.tv_sec);
    s[kAfterMtimeNsec] = after.stx_mtime.tv_nsec;
    s[kAfterCtimeSec] = static_cast<double>(after.stx_ctime.tv_sec);
    s[kAfterCtimeNsec] = after.stx_ctime.tv_nsec;
    dirInos_[n] = before.stx_ino;
    return Outcome(n, kDone);
  }

  bool Outcome(size_t n, NameOutcome o) {
    outcomes_[n] = o;
    return true;
  }

  bool Fail(int err, const char* syscall) {
    fail_ = {err, syscall};
    return false;
  }

  std::vector<Target> targets_;
  std::vector<int> dirs_;
  std::vector<std::string> names_;
  std::string tmpPrefix_;
  int64_t tmpStart_;
  std::vector<int> outcomes_;
  std::vector<double> stamps_;
  std::vector<uint64_t> dirInos_;
  std::vector<uint8_t> gone_;
  Failure fail_;
};

// replaceNames(targets: Float64Array, ids: BigUint64Array, dirs: Int32Array, names: string[], tmpPrefix, tmpStart).
Napi::Value ReplaceNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
    throw Napi::TypeError::New(env, "replaceNames(targets: Float64Array, ids: BigUint64Array, dirs: Int32Array, names: string[], tmpPrefix: string, tmpStart: number)");
  }
  Napi::Float64Array fields = info[0].As<Napi::Float64Array>();
  Napi::TypedArrayOf<uint64_t> ids = info[1].As<Napi::TypedArrayOf<uint64_t>>();
  std::vector<int> dirs = ArgInt32Array(info, 2);
  std::vector<std::string> names = ArgStrings(info, 3);
  std::string tmpPrefix = ArgString(info, 4);
  int64_t tmpStart = ArgInt64(info, 5);
  size_t count = fields.ElementLength() / kTargetFields;
  if (fields.ElementLength() != count * kTargetFields || ids.ElementLength() != 2 * count ||
      dirs.size() != names.size()) {
    throw Napi::RangeError::New(env, "replaceNames: arrays of different lengths");
  }
  std::vector<Target> targets(count);
  size_t total = 0;
  for (size_t k = 0; k < count; k++) {
    const double* f = &fields[k * kTargetFields];
    targets[k] = {static_cast<int>(f[kMaster]), static_cast<int>(f[kTarget]), f[kLeased] != 0,
                  static_cast<int64_t>(f[kSealFlags]), static_cast<size_t>(f[kNames]), ids[2 * k], ids[2 * k + 1]};
    total += targets[k].names;
  }
  if (total != names.size()) throw Napi::RangeError::New(env, "replaceNames: the targets' name counts do not add up");
  Replacer replacer(std::move(targets), std::move(dirs), std::move(names), std::move(tmpPrefix), tmpStart);
  replacer.Run();
  return replacer.Result(env);
}

}  // namespace

void InitLink(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "prepareLinks", PrepareLinks);
  SetFunction(exports, "replaceNames", ReplaceNames);
}

}  // namespace vefs
