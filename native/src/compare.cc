// compareFiles: are two open files' first `size` bytes equal? Read and
// compared on a worker thread, in C buffers, so a unify run's byte-for-byte
// checks neither copy into JS memory nor hold up the event loop.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>

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

class CompareWorker : public Napi::AsyncWorker {
 public:
  CompareWorker(Napi::Env env, int a, int b, int64_t size, bool leases)
      : Napi::AsyncWorker(env, "compareFiles"), deferred_(Napi::Promise::Deferred::New(env)),
        a_(a), b_(b), size_(size), leases_(leases) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  void Execute() override {
    std::unique_ptr<char[]> bufA(new char[kChunk]), bufB(new char[kChunk]);
    for (int64_t pos = 0; pos < size_;) {
      size_t want = static_cast<size_t>(std::min<int64_t>(kChunk, size_ - pos));
      ssize_t na = ReadFull(a_, bufA.get(), want, pos);
      ssize_t nb = ReadFull(b_, bufB.get(), want, pos);
      if (na < 0 || nb < 0) {
        err_ = errno;
        return;
      }
      read_ += na + nb;
      if (static_cast<size_t>(na) != want || static_cast<size_t>(nb) != want) {
        outcome_ = kShort;
        return;
      }
      if (std::memcmp(bufA.get(), bufB.get(), want) != 0) {
        outcome_ = kDiffers;
        return;
      }
      pos += static_cast<int64_t>(want);
      if (leases_ && (!LeaseHeld(a_) || !LeaseHeld(b_))) {
        outcome_ = kLeaseBroken;
        return;
      }
    }
    outcome_ = kSame;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, err_, "pread").Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("outcome", Napi::Number::New(env, outcome_));
    o.Set("bytesRead", Napi::Number::New(env, static_cast<double>(read_)));
    deferred_.Resolve(o);
  }

  Napi::Promise::Deferred deferred_;
  int a_, b_;
  int64_t size_;
  bool leases_;
  int err_ = 0;
  int outcome_ = kSame;
  int64_t read_ = 0;
};

Napi::Value CompareFiles(const Napi::CallbackInfo& info) {
  int a = ArgInt32(info, 0);
  int b = ArgInt32(info, 1);
  int64_t size = ArgInteger(info, 2, 0, (int64_t{1} << 53) - 1);
  if (!info[3].IsBoolean()) throw Napi::TypeError::New(info.Env(), "argument 3 must be a boolean");
  bool leases = info[3].As<Napi::Boolean>().Value();
  // The worker deletes itself once OnOK has run.
  auto* worker = new CompareWorker(info.Env(), a, b, size, leases);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitCompare(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "compareFiles", CompareFiles);
}

}  // namespace vefs
