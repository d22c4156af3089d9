// Development-only (LLAMAFUSE_DEV_BINDINGS): one matmul computed by ggml with the weights where
// a model load puts them, for kernel-level tests.
//   matmulF16Compute({ k, n, m, weights: Uint16Array (n x k F16 bits), x: Float32Array (m x k),
//   threads, plainBuffer?, reps? }) -> { out: Float32Array (m x n), amx: bool, seconds: number }
//     The weights go into the CPU's AMX buffer type when this machine has one (amx: true), where
//     ggml runs the buffer's kernels on them (patch 0015's AMX-BF16 kernel); otherwise, or with
//     plainBuffer, into a plain CPU buffer (ggml's own matmul).
//   matmulQuantCompute({ type: "q4_0" | "q4_k" | "q5_k" | "q6_k" | "q8_0", k, n, m, weights:
//   Uint8Array (n rows of k / 32 Q4_0 or Q8_0 blocks, k / 256 Q4_K, Q5_K or Q6_K blocks), x, threads, kernel:
//   "ours" | "ggml", reps? }) -> { out, repacked: bool, oursCalls: number, seconds }
//     Q4_0 and Q4_K weights go into ggml's CPU_REPACK buffer (q4_0_8x8 / q4_K_8x8 where this
//     CPU has AVX2; repacked: false when the buffer declined them), Q5_K, Q6_K and Q8_0 weights into
//     a plain CPU buffer (ggml's generic matmul), as a model load puts them on x86. Batches of
//     rows run kernels/cpu/matmul_q4_0, matmul_q4_k, matmul_q5_k, matmul_q6_k or matmul_q8_0 ("ours",
//     oursCalls: its calls during the computes) or, with "ggml", ggml's own (the hooks are
//     lifted for the call, for every type: a Q4_0, Q5_K, Q6_K or Q8_0 model computing at the same
//     time in this process gets the same floats either way, a Q4_K one would take ggml's batch
//     kernel meanwhile, which rounds differently).
//   matmulQuantCalls(type) -> number: calls of that kernel so far in this process.
//   matmulQuantAvailable: { q4_0, q4_k, q5_k, q6_k, q8_0: bool }, whether this build has the kernels.
// SYNCHRONOUS, keep shapes small. seconds: the fastest of reps computes (default 1).
#include "matmul_binding.h"
#include "common.h"
#include "kernels/cpu/matmul_hook.h"
#include "kernels/cpu/matmul_q4_0.h"
#include "kernels/cpu/matmul_q4_k.h"
#include "kernels/cpu/matmul_q5_k.h"
#include "kernels/cpu/matmul_q6_k.h"
#include "kernels/cpu/matmul_q8_0.h"

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

using namespace llamafuse;

namespace {

// the CPU device's extra buffer type called name ("AMX", "CPU_REPACK"), or null
ggml_backend_buffer_type_t extra_buffer_type(const char * name) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return nullptr;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get_extra = (ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t))
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!get_extra) return nullptr;
    for (ggml_backend_buffer_type_t * b = get_extra(cpu); b && *b; ++b) {
        if (std::strcmp(ggml_backend_buft_name(*b), name) == 0) return *b;
    }
    return nullptr;
}

struct ctx_holder {
    ggml_context * ctx;
    explicit ctx_holder(ggml_init_params p) : ctx(ggml_init(p)) {
        if (!ctx) throw CodedError("ERR_NATIVE", "ggml_init failed (out of memory?)");
    }
    ~ctx_holder() { ggml_free(ctx); }
};

struct buffer_holder {
    ggml_backend_buffer_t buf = nullptr;
    ~buffer_holder() { if (buf) ggml_backend_buffer_free(buf); }
};

int64_t get_int(const Napi::Object & o, const char * key, int64_t lo, int64_t hi) {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) throw CodedError("ERR_INVALID_OPTION", std::string(key) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= (double) lo && d <= (double) hi) || d != std::floor(d)) {
        throw CodedError("ERR_INVALID_OPTION", std::string(key) + " out of range");
    }
    return (int64_t) d;
}

// out = x * w^T through a one-op graph on `threads` threads, with the weights (`weight_bytes`
// of type `type`, n rows of k) in buft; the fastest of reps computes.
struct mul_mat_result {
    std::vector<float> out;
    double seconds;
};
mul_mat_result compute_mul_mat(ggml_type type, int64_t K, int64_t N, int64_t M, const void * weight_bytes,
                               const float * x_in, int threads, int reps, ggml_backend_buffer_type_t buft) {
    ctx_holder wctx({ ggml_tensor_overhead() * 2, nullptr, true });
    ggml_tensor * w = ggml_new_tensor_2d(wctx.ctx, type, K, N);
    buffer_holder wbuf;
    wbuf.buf = ggml_backend_alloc_ctx_tensors_from_buft(wctx.ctx, buft);
    if (!wbuf.buf) throw CodedError("ERR_NATIVE", "weight buffer allocation failed");
    ggml_backend_buffer_set_usage(wbuf.buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_tensor_set(w, weight_bytes, 0, ggml_nbytes(w));

    const size_t bytes = (size_t) (M * K + M * N) * sizeof(float) + ggml_tensor_overhead() * 4 + ggml_graph_overhead() + 1024;
    ctx_holder cctx({ bytes, nullptr, false });
    ggml_tensor * x = ggml_new_tensor_2d(cctx.ctx, GGML_TYPE_F32, K, M);
    std::memcpy(x->data, x_in, ggml_nbytes(x));
    ggml_tensor * out = ggml_mul_mat(cctx.ctx, w, x);
    ggml_cgraph * graph = ggml_new_graph(cctx.ctx);
    ggml_build_forward_expand(graph, out);
    // poison the output: every element must be written
    std::fill((float *) out->data, (float *) out->data + ggml_nelements(out), NAN);

    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    ggml_threadpool * tp = ggml_threadpool_new(&tpp);
    if (!tp) throw CodedError("ERR_NATIVE", "ggml_threadpool_new failed");
    ggml_cplan plan = ggml_graph_plan(graph, threads, tp);
    std::vector<uint8_t> work(plan.work_size);
    plan.work_data = work.data();
    double best = INFINITY;
    ggml_status st = GGML_STATUS_SUCCESS;
    for (int r = 0; r < reps && st == GGML_STATUS_SUCCESS; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        st = ggml_graph_compute(graph, &plan);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    ggml_threadpool_free(tp);
    if (st != GGML_STATUS_SUCCESS) throw CodedError("ERR_NATIVE", "ggml_graph_compute failed");
    const float * o = (const float *) out->data;
    return { std::vector<float>(o, o + M * N), best };
}

template <typename TA>
TA typed_array(const Napi::Object & spec, const char * key, napi_typedarray_type type, size_t length, const char * what) {
    Napi::Value v = spec.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
        throw CodedError("ERR_INVALID_OPTION", std::string(key) + " must be a " + what);
    }
    TA a = v.As<TA>();
    if (a.ElementLength() != length) throw CodedError("ERR_INVALID_OPTION", std::string(key) + " has the wrong length");
    return a;
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float> & v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
    return a;
}

Napi::Value MatmulF16Compute(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    try {
        if (info.Length() < 1 || !info[0].IsObject()) throw CodedError("ERR_INVALID_OPTION", "expected a spec object");
        Napi::Object spec = info[0].As<Napi::Object>();
        const int64_t K = get_int(spec, "k", 1, 1 << 16);
        const int64_t N = get_int(spec, "n", 1, 1 << 16);
        const int64_t M = get_int(spec, "m", 1, 1 << 16);
        const int threads = (int) get_int(spec, "threads", 1, 64);
        const bool plain = spec.Get("plainBuffer").ToBoolean();
        const int reps = spec.Has("reps") ? (int) get_int(spec, "reps", 1, 1000) : 1;
        auto w_in = typed_array<Napi::Uint16Array>(spec, "weights", napi_uint16_array, (size_t) (N * K), "Uint16Array of n * k values");
        auto x_in = typed_array<Napi::Float32Array>(spec, "x", napi_float32_array, (size_t) (M * K), "Float32Array of m * k values");

        ggml_backend_buffer_type_t amx = plain ? nullptr : extra_buffer_type("AMX");
        mul_mat_result r = compute_mul_mat(GGML_TYPE_F16, K, N, M, w_in.Data(), x_in.Data(), threads, reps,
                                           amx ? amx : ggml_backend_cpu_buffer_type());
        Napi::Object o = Napi::Object::New(env);
        o.Set("out", to_js(env, r.out));
        o.Set("amx", Napi::Boolean::New(env, amx != nullptr));
        o.Set("seconds", Napi::Number::New(env, r.seconds));
        return o;
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_NATIVE", e.what());
    }
}

// "q4_0" / "q4_k" / "q5_k" / "q6_k" / "q8_0": the ggml type, the weights per block, the bytes per block, and
// whether ggml repacks it on x86
struct quant_type {
    ggml_type type;
    int64_t block_values;
    int64_t block_bytes;
    bool repacked;
};
quant_type quant_type_of(const std::string & name) {
    if (name == "q4_0") return { GGML_TYPE_Q4_0, 32, 18, true };
    if (name == "q4_k") return { GGML_TYPE_Q4_K, 256, 144, true };
    if (name == "q5_k") return { GGML_TYPE_Q5_K, 256, 176, false };
    if (name == "q6_k") return { GGML_TYPE_Q6_K, 256, 210, false };
    if (name == "q8_0") return { GGML_TYPE_Q8_0, 32, 34, false };
    throw CodedError("ERR_INVALID_OPTION", "type must be \"q4_0\", \"q4_k\", \"q5_k\", \"q6_k\" or \"q8_0\"");
}

unsigned long long quant_calls(ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q4_0: return cpu::matmul_q4_0_calls();
        case GGML_TYPE_Q4_K: return cpu::matmul_q4_k_calls();
        case GGML_TYPE_Q5_K: return cpu::matmul_q5_k_calls();
        case GGML_TYPE_Q6_K: return cpu::matmul_q6_k_calls();
        default: return cpu::matmul_q8_0_calls();
    }
}

Napi::Value MatmulQuantCompute(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    try {
        if (info.Length() < 1 || !info[0].IsObject()) throw CodedError("ERR_INVALID_OPTION", "expected a spec object");
        Napi::Object spec = info[0].As<Napi::Object>();
        const quant_type qt = quant_type_of(spec.Get("type").ToString().Utf8Value());
        const int64_t K = get_int(spec, "k", qt.block_values, 1 << 16);
        const int64_t N = get_int(spec, "n", qt.repacked ? 8 : 1, 1 << 16);
        const int64_t M = get_int(spec, "m", 1, 1 << 12);
        if (K % qt.block_values != 0) throw CodedError("ERR_INVALID_OPTION", "k must be a multiple of the block size");
        const int threads = (int) get_int(spec, "threads", 1, 64);
        const int reps = spec.Has("reps") ? (int) get_int(spec, "reps", 1, 1000) : 1;
        const std::string kernel = spec.Get("kernel").ToString().Utf8Value();
        if (kernel != "ours" && kernel != "ggml") throw CodedError("ERR_INVALID_OPTION", "kernel must be \"ours\" or \"ggml\"");
        auto w_in = typed_array<Napi::Uint8Array>(spec, "weights", napi_uint8_array, (size_t) (N * (K / qt.block_values) * qt.block_bytes), "Uint8Array of n rows of blocks");
        auto x_in = typed_array<Napi::Float32Array>(spec, "x", napi_float32_array, (size_t) (M * K), "Float32Array of m * k values");

        ggml_backend_buffer_type_t repack = qt.repacked ? extra_buffer_type("CPU_REPACK") : nullptr;
        if (kernel == "ggml") cpu::matmul_hook_lift();
        const uint64_t calls0 = quant_calls(qt.type);
        mul_mat_result r;
        try {
            r = compute_mul_mat(qt.type, K, N, M, w_in.Data(), x_in.Data(), threads, reps,
                                repack ? repack : ggml_backend_cpu_buffer_type());
        } catch (...) {
            if (kernel == "ggml") cpu::matmul_hook_reinstall();
            throw;
        }
        const uint64_t calls = quant_calls(qt.type) - calls0;
        if (kernel == "ggml") cpu::matmul_hook_reinstall();
        Napi::Object o = Napi::Object::New(env);
        o.Set("out", to_js(env, r.out));
        o.Set("repacked", Napi::Boolean::New(env, repack != nullptr));
        o.Set("oursCalls", Napi::Number::New(env, (double) calls));
        o.Set("seconds", Napi::Number::New(env, r.seconds));
        return o;
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_NATIVE", e.what());
    }
}

Napi::Value MatmulQuantCalls(const Napi::CallbackInfo & info) {
    try {
        return Napi::Number::New(info.Env(), (double) quant_calls(quant_type_of(info[0].ToString().Utf8Value()).type));
    } catch (const CodedError & e) {
        throw make_error(info.Env(), e.code, e.what());
    }
}

} // namespace

void matmul_binding_register(Napi::Env env, Napi::Object exports) {
    exports.Set("matmulF16Compute", Napi::Function::New(env, MatmulF16Compute));
    exports.Set("matmulQuantCompute", Napi::Function::New(env, MatmulQuantCompute));
    exports.Set("matmulQuantCalls", Napi::Function::New(env, MatmulQuantCalls));
    Napi::Object available = Napi::Object::New(env);
    available.Set("q4_0", Napi::Boolean::New(env, cpu::matmul_q4_0_available()));
    available.Set("q4_k", Napi::Boolean::New(env, cpu::matmul_q4_k_available()));
    available.Set("q5_k", Napi::Boolean::New(env, cpu::matmul_q5_k_available()));
    available.Set("q6_k", Napi::Boolean::New(env, cpu::matmul_q6_k_available()));
    available.Set("q8_0", Napi::Boolean::New(env, cpu::matmul_q8_0_available()));
    exports.Set("matmulQuantAvailable", available);
}
