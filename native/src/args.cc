// Strict argument readers: a wrong type is a programming error, and silently
// coercing it could act on the wrong fd or path.
#include <cmath>
#include <cstring>
#include <limits>

#include "vefs.h"

namespace vefs {

namespace {

[[noreturn]] void BadArgument(Napi::Env env, size_t i, const char* expected) {
  throw Napi::TypeError::New(env, "argument " + std::to_string(i) + " must be " + expected);
}

}  // namespace

int64_t ArgInteger(const Napi::CallbackInfo& info, size_t i, int64_t min, int64_t max) {
  if (!info[i].IsNumber()) BadArgument(info.Env(), i, "a number");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (std::trunc(value) != value || value < static_cast<double>(min) ||
      value > static_cast<double>(max)) {
    BadArgument(info.Env(), i, "an integer in range");
  }
  return static_cast<int64_t>(value);
}

int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int32_t>(ArgInteger(info, i, std::numeric_limits<int32_t>::min(),
                                         std::numeric_limits<int32_t>::max()));
}

uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<uint32_t>(ArgInteger(info, i, 0, std::numeric_limits<uint32_t>::max()));
}

int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i) {
  // Beyond 2^53 a Number is no longer an exact integer.
  constexpr int64_t kSafe = (int64_t{1} << 53) - 1;
  return ArgInteger(info, i, -kSafe, kSafe);
}

uint64_t ArgBigUint64(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBigInt()) BadArgument(info.Env(), i, "a bigint");
  bool lossless = false;
  uint64_t value = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) BadArgument(info.Env(), i, "a bigint in range");
  return value;
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) BadArgument(info.Env(), i, "a string");
  napi_env env = info.Env();
  size_t len = 0;
  napi_get_value_string_latin1(env, info[i], nullptr, 0, &len);
  std::string value(len, '\0');
  napi_get_value_string_latin1(env, info[i], value.data(), len + 1, &len);
  // The kernel would stop at an embedded NUL and act on a shorter path.
  if (std::memchr(value.data(), '\0', value.size())) {
    BadArgument(info.Env(), i, "a string without NUL characters");
  }
  return value;
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBuffer()) BadArgument(info.Env(), i, "a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace vefs
