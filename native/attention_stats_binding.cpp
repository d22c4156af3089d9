// Public JS surface of the fused CPU attention, in every build:
//   kernelStats(), kernelStatsReset()   counters of ops fused / declined (fattn_hook.h)
//   attentionKernelInfo()               whether the SIMD inner loops run on this CPU
#include "attention_binding.h"
#include "kernels/cpu/fattn_cpu.h"
#include "kernels/cpu/fattn_hook.h"

using namespace llamafuse;

namespace {

Napi::Value KernelStats(const Napi::CallbackInfo & info) {
    const AttentionStats s = attention_stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("fused", Napi::Number::New(info.Env(), (double) s.fused));
    o.Set("declined", Napi::Number::New(info.Env(), (double) s.declined));
    return o;
}

Napi::Value KernelStatsReset(const Napi::CallbackInfo & info) {
    attention_stats_reset();
    return info.Env().Undefined();
}

Napi::Value KernelInfo(const Napi::CallbackInfo & info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("simd", Napi::Boolean::New(info.Env(), cpu::fattn_using_simd()));
    return o;
}

} // namespace

void attention_stats_register(Napi::Env env, Napi::Object exports) {
    exports.Set("kernelStats", Napi::Function::New(env, KernelStats));
    exports.Set("kernelStatsReset", Napi::Function::New(env, KernelStatsReset));
    exports.Set("attentionKernelInfo", Napi::Function::New(env, KernelInfo));
}
