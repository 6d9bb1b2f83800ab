// Descriptors closed by threads of their own. The last close of an inode
// that lost all its names frees its blocks, and on an ext4 mounted with
// discard that takes ~115 us, mostly waiting for the device: a unify run
// closes one per reclaimed inode. On the libuv pool these closes took the
// threads the link's own work needed (two calls running were too few to keep
// up, four left nothing for the rest); here they wait beside it.
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "vefs.h"

namespace vefs {

namespace {

constexpr int kClosers = 4;

struct Closer {
  std::mutex mutex;
  std::condition_variable work, drained;
  std::deque<int> fds;
  size_t busy = 0;
  bool started = false;

  size_t Backlog() { return fds.size() + busy; }

  void Run() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      work.wait(lock, [&] { return !fds.empty(); });
      int fd = fds.front();
      fds.pop_front();
      busy++;
      lock.unlock();
      // No retry on EINTR: the descriptor is released either way. Errors are
      // ignored: these descriptors were only read.
      close(fd);
      lock.lock();
      busy--;
      drained.notify_all();
    }
  }
};

// Never destroyed: its threads live as long as the process.
Closer& TheCloser() {
  static Closer* closer = new Closer();
  return *closer;
}

// closeInBackground(fds: Int32Array): queued for the closing threads; returns at once.
Napi::Value CloseInBackground(const Napi::CallbackInfo& info) {
  std::vector<int> fds = ArgInt32Array(info, 0);
  Closer& c = TheCloser();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!c.started) {
      for (int i = 0; i < kClosers; i++) std::thread([&c] { c.Run(); }).detach();
      c.started = true;
    }
    c.fds.insert(c.fds.end(), fds.begin(), fds.end());
  }
  c.work.notify_all();
  return info.Env().Undefined();
}

// closeBacklog(): descriptors queued or being closed.
Napi::Value CloseBacklog(const Napi::CallbackInfo& info) {
  Closer& c = TheCloser();
  std::lock_guard<std::mutex> lock(c.mutex);
  return Napi::Number::New(info.Env(), static_cast<double>(c.Backlog()));
}

// closeDrained(limit): resolves once at most `limit` descriptors are left (waits on a pool thread).
Napi::Value CloseDrained(const Napi::CallbackInfo& info) {
  auto limit = static_cast<size_t>(ArgInteger(info, 0, 0, int64_t{1} << 40));
  return RunAsync(info.Env(), "vefs.closeDrained", [limit] {
    Closer& c = TheCloser();
    std::unique_lock<std::mutex> lock(c.mutex);
    c.drained.wait(lock, [&] { return c.Backlog() <= limit; });
    return Failure{};
  });
}

}  // namespace

void InitCloser(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "closeInBackground", CloseInBackground);
  SetFunction(exports, "closeBacklog", CloseBacklog);
  SetFunction(exports, "closeDrained", CloseDrained);
}

}  // namespace vefs
