// Reflinks and in-kernel copies, and copyData, which copies a whole file
// without filling its holes.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "vefs.h"

namespace vefs {

namespace {

// Errors by which FICLONE says "not here" (filesystem without reflinks,
// different filesystems, unsuitable file) rather than reporting a failure.
bool CloneUnsupported(int err) {
  return err == EOPNOTSUPP || err == ENOTTY || err == EXDEV || err == EINVAL || err == ENOSYS;
}

// Likewise for copy_file_range, after which plain reads and writes still work.
bool CopyRangeUnsupported(int err) {
  return err == EXDEV || err == ENOSYS || err == EINVAL || err == EOPNOTSUPP;
}

// Copies byte ranges from src to the same offsets of dest, dropping from
// copy_file_range to pread/pwrite for good once the kernel refuses it.
class RangeCopier {
 public:
  RangeCopier(int src, int dest) : src_(src), dest_(dest) {}

  Failure Copy(off_t offset, off_t length) {
    while (length > 0) {
      ssize_t n = use_copy_range_ ? CopyRange(offset, length) : ReadWrite(offset, length);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (use_copy_range_ && CopyRangeUnsupported(errno)) {
          use_copy_range_ = false;
          continue;
        }
        return {errno, use_copy_range_ ? "copy_file_range" : failed_call_};
      }
      // The source shrank while being copied; the final ftruncate still
      // gives dest the size the source had at the start.
      if (n == 0) break;
      offset += n;
      length -= n;
    }
    return {};
  }

 private:
  ssize_t CopyRange(off_t offset, off_t length) {
    loff_t in = offset, out = offset;
    return copy_file_range(src_, &in, dest_, &out, static_cast<size_t>(length), 0);
  }

  ssize_t ReadWrite(off_t offset, off_t length) {
    if (buffer_.empty()) buffer_.resize(kBufferSize);
    size_t want = static_cast<size_t>(std::min<off_t>(length, kBufferSize));
    ssize_t got = pread(src_, buffer_.data(), want, offset);
    if (got <= 0) {
      failed_call_ = "pread";
      return got;
    }
    for (ssize_t done = 0; done < got;) {
      ssize_t put = pwrite(dest_, buffer_.data() + done, got - done, offset + done);
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) {
        failed_call_ = "pwrite";
        return put;
      }
      done += put;
    }
    return got;
  }

  static constexpr size_t kBufferSize = 1 << 20;
  int src_, dest_;
  bool use_copy_range_ = true;
  std::vector<char> buffer_;
  const char* failed_call_ = "pread";
};

Failure CopyData(int src, int dest) {
  struct stat st;
  if (fstat(src, &st) < 0) return {errno, "fstat"};
  if (RetryEintr([&] { return ioctl(dest, FICLONE, src); }) == 0) return {};
  if (!CloneUnsupported(errno)) return {errno, "ioctl"};

  RangeCopier copier(src, dest);
  for (off_t pos = 0; pos < st.st_size;) {
    off_t data = RetryEintr([&] { return lseek(src, pos, SEEK_DATA); });
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) return {errno, "lseek"};
    off_t hole = RetryEintr([&] { return lseek(src, data, SEEK_HOLE); });
    if (hole < 0) return {errno, "lseek"};
    // Data written past the size taken at the start is not part of the copy.
    hole = std::min(hole, st.st_size);
    if (data >= hole) break;
    Failure failure = copier.Copy(data, hole - data);
    if (failure.err) return failure;
    pos = hole;
  }
  // Sets the size without writing, so a trailing hole stays a hole.
  if (RetryEintr([&] { return ftruncate(dest, st.st_size); }) < 0) return {errno, "ftruncate"};
  return {};
}

Napi::Value Ficlone(const Napi::CallbackInfo& info) {
  int dest = ArgInt32(info, 0);
  int src = ArgInt32(info, 1);
  if (RetryEintr([&] { return ioctl(dest, FICLONE, src); }) < 0) ThrowErrno(info.Env(), "ioctl");
  return info.Env().Undefined();
}

Napi::Value CopyFileRange(const Napi::CallbackInfo& info) {
  int src = ArgInt32(info, 0);
  loff_t src_offset = ArgInt64(info, 1);
  int dest = ArgInt32(info, 2);
  loff_t dest_offset = ArgInt64(info, 3);
  auto length = static_cast<size_t>(ArgInteger(info, 4, 0, (int64_t{1} << 53) - 1));
  ssize_t n = RetryEintr(
      [&] { return copy_file_range(src, &src_offset, dest, &dest_offset, length, 0); });
  if (n < 0) ThrowErrno(info.Env(), "copy_file_range");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value CopyDataAsync(const Napi::CallbackInfo& info) {
  int src = ArgInt32(info, 0);
  int dest = ArgInt32(info, 1);
  return RunAsync(info.Env(), "vefs.copyData", [src, dest] { return CopyData(src, dest); });
}

}  // namespace

void InitCopy(Napi::Object exports, Napi::Object /*constants*/) {
  SetFunction(exports, "ficlone", Ficlone);
  SetFunction(exports, "copyFileRange", CopyFileRange);
  SetFunction(exports, "copyData", CopyDataAsync);
}

}  // namespace vefs
