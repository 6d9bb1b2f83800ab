// The FUSE device for the kernel-protocol binding: opening /dev/fuse,
// mount(2) with its fd, one reader thread for every device of the process,
// replies, notifications and passthrough backing files.
//
// Why one epoll thread: Node cannot wait on /dev/fuse itself (net.Socket
// refuses the fd; a blocking fs.read holds one of libuv's four pool threads
// per mount). A thread per mount would cost a stack and a wake-up per mount;
// one thread that reads every ready device until it would block, and hands
// everything it read to JavaScript in one call, costs one thread for 500
// mounts and batches requests under load.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

// From the kernel's <linux/fuse.h> (7.40+), which Debian 12's headers predate.
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kIocBackingClose = _IOW(229, 2, uint32_t);

// A request is at most max_write (1 MiB, 256 pages) plus its headers.
constexpr size_t kReadBuffer = (1 << 20) + 4096;

struct Request {
  int fd;
  uint8_t* data;  // null: the device ended (unmounted or aborted)
  size_t len;
};

class Reader {
 public:
  void Start(Napi::Env env, Napi::Function deliver) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) ThrowErrno(env, "epoll_create1");
    tsfn_ = Napi::ThreadSafeFunction::New(env, deliver, "vefs-fuse-reader", 0, 1);
    tsfn_.Unref(env);
    thread_ = std::thread([this] { Loop(); });
    thread_.detach();
  }

  bool started() const { return epoll_ >= 0; }

  void Add(Napi::Env env, int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) ThrowErrno(env, "fcntl");
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) < 0) ThrowErrno(env, "epoll_ctl");
    if (devices_++ == 0) tsfn_.Ref(env);
  }

  void Remove(Napi::Env env, int fd) {
    if (epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr) < 0 && errno != ENOENT && errno != EBADF) {
      ThrowErrno(env, "epoll_ctl");
    }
    if (devices_ > 0 && --devices_ == 0) tsfn_.Unref(env);
  }

  // On the JS thread: everything read since the last call.
  std::vector<Request> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Request> out;
    out.swap(queue_);
    return out;
  }

 private:
  void Loop() {
    auto* buf = static_cast<uint8_t*>(std::malloc(kReadBuffer));
    struct epoll_event events[64];
    for (;;) {
      int n = epoll_wait(epoll_, events, 64, -1);
      if (n < 0) continue;  // EINTR
      std::vector<Request> got;
      for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        // A bounded number per device per round keeps one busy mount from starving the rest.
        for (int k = 0; k < 64; k++) {
          ssize_t r = read(fd, buf, kReadBuffer);
          if (r > 0) {
            auto* copy = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(r)));
            std::memcpy(copy, buf, static_cast<size_t>(r));
            got.push_back({fd, copy, static_cast<size_t>(r)});
            continue;
          }
          if (r < 0 && (errno == EINTR || errno == ENOENT)) continue;  // ENOENT: an interrupted request vanished
          if (r < 0 && errno == EAGAIN) break;
          // ENODEV (unmounted), ECONNABORTED (aborted) or EOF: this device is done.
          epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
          got.push_back({fd, nullptr, 0});
          break;
        }
      }
      if (got.empty()) continue;
      bool wake;
      {
        std::lock_guard<std::mutex> lock(mu_);
        wake = queue_.empty();
        for (auto& r : got) queue_.push_back(r);
      }
      // One call drains the whole queue; more arrivals before it runs ride along.
      if (wake) tsfn_.BlockingCall();
    }
  }

  int epoll_ = -1;
  int devices_ = 0;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Request> queue_;
};

Reader reader;

// fuseStart(deliver): deliver(fds: number[], requests: (Buffer | null)[]) runs on the JS thread.
Napi::Value FuseStart(const Napi::CallbackInfo& info) {
  if (reader.started()) throw Napi::Error::New(info.Env(), "the FUSE reader is already started");
  Napi::Function deliver = info[0].As<Napi::Function>();
  Napi::Function wrapped = Napi::Function::New(info.Env(), [deliver = Napi::Persistent(deliver)](
      const Napi::CallbackInfo& ci) mutable {
    Napi::Env env = ci.Env();
    std::vector<Request> reqs = reader.Take();
    Napi::Array fds = Napi::Array::New(env, reqs.size());
    Napi::Array bufs = Napi::Array::New(env, reqs.size());
    for (size_t i = 0; i < reqs.size(); i++) {
      fds.Set(i, Napi::Number::New(env, reqs[i].fd));
      if (reqs[i].data) {
        bufs.Set(i, Napi::Buffer<uint8_t>::New(env, reqs[i].data, reqs[i].len,
                                              [](Napi::Env, uint8_t* p) { std::free(p); }));
      } else {
        bufs.Set(i, env.Null());
      }
    }
    if (!reqs.empty()) deliver.Call({fds, bufs});
  });
  reader.Start(info.Env(), wrapped);
  return info.Env().Undefined();
}

Napi::Value FuseOpenDevice(const Napi::CallbackInfo& info) {
  int fd = RetryEintr([] { return open("/dev/fuse", O_RDWR | O_CLOEXEC); });
  if (fd < 0) {
    std::string path = "/dev/fuse";
    ThrowErrno(info.Env(), "open", &path);
  }
  return Napi::Number::New(info.Env(), fd);
}

// mount(2): fuseMount(source, target, fstype, flags, data).
Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source = ArgString(info, 0);
  std::string target = ArgString(info, 1);
  std::string fstype = ArgString(info, 2);
  auto flags = static_cast<unsigned long>(ArgInteger(info, 3, 0, UINT32_MAX));
  std::string data = ArgString(info, 4);
  if (mount(source.c_str(), target.c_str(), fstype.c_str(), flags, data.c_str()) < 0) {
    ThrowErrno(info.Env(), "mount", &target);
  }
  return info.Env().Undefined();
}

Napi::Value FuseAdd(const Napi::CallbackInfo& info) {
  reader.Add(info.Env(), ArgInt32(info, 0));
  return info.Env().Undefined();
}

Napi::Value FuseRemove(const Napi::CallbackInfo& info) {
  reader.Remove(info.Env(), ArgInt32(info, 0));
  return info.Env().Undefined();
}

// A reply: writev of the given buffers as one message. Returns the errno
// instead of throwing: ENOENT (the request was interrupted and is gone) and
// ENODEV (the mount is gone) are normal outcomes for the caller to weigh.
Napi::Value FuseReply(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  Napi::Array parts = info[1].As<Napi::Array>();
  std::vector<struct iovec> iov(parts.Length());
  for (uint32_t i = 0; i < parts.Length(); i++) {
    auto b = parts.Get(i).As<Napi::Buffer<uint8_t>>();
    iov[i].iov_base = b.Data();
    iov[i].iov_len = b.Length();
  }
  ssize_t r = RetryEintr([&] { return writev(fd, iov.data(), static_cast<int>(iov.size())); });
  return Napi::Number::New(info.Env(), r < 0 ? errno : 0);
}

// A notification on a worker thread: the kernel may need a lock that a
// request this process has yet to answer holds, so the event loop must not wait.
Napi::Value FuseNotify(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0);
  Napi::Buffer<uint8_t> msg = ArgBuffer(info, 1);
  auto copy = std::make_shared<std::vector<uint8_t>>(msg.Data(), msg.Data() + msg.Length());
  return RunAsync(info.Env(), "fuseNotify", [fd, copy]() -> Failure {
    ssize_t r = RetryEintr([&] { return write(fd, copy->data(), copy->size()); });
    if (r < 0) return {errno, "write"};
    return {};
  });
}

Napi::Value FuseBackingOpen(const Napi::CallbackInfo& info) {
  int dev = ArgInt32(info, 0);
  BackingMap map = {};
  map.fd = ArgInt32(info, 1);
  int id = RetryEintr([&] { return ioctl(dev, kIocBackingOpen, &map); });
  if (id < 0) ThrowErrno(info.Env(), "ioctl(FUSE_DEV_IOC_BACKING_OPEN)");
  return Napi::Number::New(info.Env(), id);
}

Napi::Value FuseBackingClose(const Napi::CallbackInfo& info) {
  int dev = ArgInt32(info, 0);
  uint32_t id = ArgUint32(info, 1);
  if (RetryEintr([&] { return ioctl(dev, kIocBackingClose, &id); }) < 0) {
    ThrowErrno(info.Env(), "ioctl(FUSE_DEV_IOC_BACKING_CLOSE)");
  }
  return info.Env().Undefined();
}

// A copy of another process's descriptor (pidfd_getfd(2)), close-on-exec:
// how the descriptor holder and a restarted server hand devices over.
Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  auto pid = static_cast<pid_t>(ArgInt32(info, 0));
  int target = ArgInt32(info, 1);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) ThrowErrno(info.Env(), "pidfd_open");
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target, 0));
  int err = errno;
  close(pidfd);
  if (fd < 0) throw ErrnoError(info.Env(), err, "pidfd_getfd");
  return Napi::Number::New(info.Env(), fd);
}

}  // namespace

void InitFuseDev(Napi::Object exports, Napi::Object constants) {
  SetFunction(exports, "fuseStart", FuseStart);
  SetFunction(exports, "fuseOpenDevice", FuseOpenDevice);
  SetFunction(exports, "mount", Mount);
  SetFunction(exports, "fuseAdd", FuseAdd);
  SetFunction(exports, "fuseRemove", FuseRemove);
  SetFunction(exports, "fuseReply", FuseReply);
  SetFunction(exports, "fuseNotify", FuseNotify);
  SetFunction(exports, "fuseBackingOpen", FuseBackingOpen);
  SetFunction(exports, "fuseBackingClose", FuseBackingClose);
  SetFunction(exports, "pidfdGetfd", PidfdGetfd);

  VEFS_CONSTANT(constants, MS_NOSUID);
  VEFS_CONSTANT(constants, MS_NODEV);
  VEFS_CONSTANT(constants, MS_NOATIME);
}

}  // namespace vefs
