// Promise-returning work on the libuv thread pool.
#include <utility>

#include "vefs.h"

namespace vefs {

namespace {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, std::function<Failure()> job)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  void Execute() override { failure_ = job_(); }

  void OnOK() override {
    if (failure_.err) {
      deferred_.Reject(ErrnoError(Env(), failure_.err, failure_.syscall).Value());
    } else {
      deferred_.Resolve(Env().Undefined());
    }
  }

  Napi::Promise::Deferred deferred_;
  std::function<Failure()> job_;
  Failure failure_;
};

}  // namespace

Napi::Promise RunAsync(Napi::Env env, const char* name, std::function<Failure()> job) {
  // The worker deletes itself once OnOK has run.
  auto* worker = new PromiseWorker(env, name, std::move(job));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace vefs
