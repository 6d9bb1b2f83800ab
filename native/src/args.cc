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

namespace {

// A byte string's bytes; false for a string with a NUL, at which the kernel
// would stop and act on a shorter path.
bool Bytes(napi_env env, napi_value v, std::string& value) {
  size_t len = 0;
  napi_get_value_string_latin1(env, v, nullptr, 0, &len);
  value.assign(len, '\0');
  napi_get_value_string_latin1(env, v, value.data(), len + 1, &len);
  return std::memchr(value.data(), '\0', value.size()) == nullptr;
}

}  // namespace

std::string ArgString(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) BadArgument(info.Env(), i, "a string");
  std::string value;
  if (!Bytes(info.Env(), info[i], value)) BadArgument(info.Env(), i, "a string without NUL characters");
  return value;
}

std::vector<std::string> ArgStrings(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) BadArgument(info.Env(), i, "an array of strings");
  Napi::Array list = info[i].As<Napi::Array>();
  std::vector<std::string> values(list.Length());
  for (uint32_t k = 0; k < list.Length(); k++) {
    Napi::Value v = list.Get(k);
    if (!v.IsString() || !Bytes(info.Env(), v, values[k])) BadArgument(info.Env(), i, "an array of strings without NUL characters");
  }
  return values;
}

std::vector<int> ArgInt32Array(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    BadArgument(info.Env(), i, "an Int32Array");
  }
  Napi::Int32Array array = info[i].As<Napi::Int32Array>();
  return std::vector<int>(array.Data(), array.Data() + array.ElementLength());
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBuffer()) BadArgument(info.Env(), i, "a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace vefs
