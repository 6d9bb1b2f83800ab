// compareFiles: are the first `size` bytes of several open files equal to
// those of one master? Read and compared on a worker thread, in C buffers,
// so a unify run's byte-for-byte checks neither copy into JS memory nor hold
// up the event loop, and the master is read once for all its targets.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

constexpr size_t kChunk = 256 * 1024;

enum Outcome : int { kSame = 0, kDiffers = 1, kShort = 2, kLeaseBroken = 3 };

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

// While a lease is being broken F_GETLEASE answers the type it is broken to.
bool LeaseHeld(int fd) { return fcntl(fd, F_GETLEASE) == F_RDLCK; }

// One master against several targets: each chunk of the master is read
// once, then the same chunk of every target still in the running.
class CompareWorker : public Napi::AsyncWorker {
 public:
  CompareWorker(Napi::Env env, int master, std::vector<int> targets, int64_t size, bool leases)
      : Napi::AsyncWorker(env, "compareFiles"), deferred_(Napi::Promise::Deferred::New(env)),
        master_(master), targets_(std::move(targets)), size_(size), leases_(leases),
        outcomes_(targets_.size(), kSame) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  void Execute() override {
    std::unique_ptr<char[]> mbuf(new char[kChunk]), tbuf(new char[kChunk]);
    size_t running = targets_.size();
    for (int64_t pos = 0; pos < size_ && running > 0;) {
      size_t want = static_cast<size_t>(std::min<int64_t>(kChunk, size_ - pos));
      ssize_t nm = ReadFull(master_, mbuf.get(), want, pos);
      if (nm < 0) {
        err_ = errno;
        return;
      }
      read_ += nm;
      bool masterShort = static_cast<size_t>(nm) != want;
      bool masterLease = !leases_ || LeaseHeld(master_);
      for (size_t i = 0; i < targets_.size(); i++) {
        if (outcomes_[i] != kSame) continue;
        Outcome o = kSame;
        if (masterShort) {
          o = kShort;
        } else {
          ssize_t nt = ReadFull(targets_[i], tbuf.get(), want, pos);
          if (nt < 0) {
            err_ = errno;
            return;
          }
          read_ += nt;
          if (static_cast<size_t>(nt) != want) o = kShort;
          else if (std::memcmp(mbuf.get(), tbuf.get(), want) != 0) o = kDiffers;
          else if (!masterLease || (leases_ && !LeaseHeld(targets_[i]))) o = kLeaseBroken;
        }
        if (o != kSame) {
          outcomes_[i] = o;
          running--;
        }
      }
      pos += static_cast<int64_t>(want);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, err_, "pread").Value());
      return;
    }
    Napi::Array outcomes = Napi::Array::New(env, outcomes_.size());
    for (size_t i = 0; i < outcomes_.size(); i++) outcomes.Set(i, Napi::Number::New(env, outcomes_[i]));
    Napi::Object o = Napi::Object::New(env);
    o.Set("outcomes", outcomes);
    o.Set("bytesRead", Napi::Number::New(env, static_cast<double>(read_)));
    deferred_.Resolve(o);
  }

  Napi::Promise::Deferred deferred_;
  int master_;
  std::vector<int> targets_;
  int64_t size_;
  bool leases_;
  std::vector<int> outcomes_;
  int err_ = 0;
  int64_t read_ = 0;
};

Napi::Value CompareFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int master = ArgInt32(info, 0);
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "argument 1 must be an array of descriptors");
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<int> targets;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "argument 1 must be an array of descriptors");
    targets.push_back(v.As<Napi::Number>().Int32Value());
  }
  int64_t size = ArgInteger(info, 2, 0, (int64_t{1} << 53) - 1);
  if (!info[3].IsBoolean()) throw Napi::TypeError::New(env, "argument 3 must be a boolean");
  bool leases = info[3].As<Napi::Boolean>().Value();
  // The worker deletes itself once OnOK has run.
  auto* worker = new CompareWorker(env, master, std::move(targets), size, leases);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitCompare(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "compareFiles", CompareFiles);
}

}  // namespace vefs
