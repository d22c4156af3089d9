// Development-only (LLAMAFUSE_DEV_BINDINGS): one F16 matmul computed by ggml with the weights
// where a model load puts them, for kernel-level tests of patch 0015's AMX-BF16 kernel.
//   matmulF16Compute({ k, n, m, weights: Uint16Array (n x k F16 bits), x: Float32Array (m x k),
//   threads, plainBuffer?, reps? }) -> { out: Float32Array (m x n), amx: bool, seconds: number }
//   SYNCHRONOUS, keep shapes small.
// The weights go into the CPU's AMX buffer type when this machine has one (amx: true), where
// ggml runs the buffer's kernels on them; otherwise, or with plainBuffer, into a plain CPU
// buffer (ggml's own matmul). seconds: the fastest of reps computes (default 1).
#include "matmul_binding.h"
#include "common.h"

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

// the CPU device's extra buffer type named "AMX", or null
ggml_backend_buffer_type_t amx_buffer_type() {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return nullptr;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get_extra = (ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t))
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!get_extra) return nullptr;
    for (ggml_backend_buffer_type_t * b = get_extra(cpu); b && *b; ++b) {
        if (std::strcmp(ggml_backend_buft_name(*b), "AMX") == 0) return *b;
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
        if (!spec.Get("weights").IsTypedArray() || spec.Get("weights").As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
            throw CodedError("ERR_INVALID_OPTION", "weights must be a Uint16Array");
        }
        if (!spec.Get("x").IsTypedArray() || spec.Get("x").As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
            throw CodedError("ERR_INVALID_OPTION", "x must be a Float32Array");
        }
        Napi::Uint16Array w_in = spec.Get("weights").As<Napi::Uint16Array>();
        Napi::Float32Array x_in = spec.Get("x").As<Napi::Float32Array>();
        if ((int64_t) w_in.ElementLength() != N * K) throw CodedError("ERR_INVALID_OPTION", "weights must hold n * k values");
        if ((int64_t) x_in.ElementLength() != M * K) throw CodedError("ERR_INVALID_OPTION", "x must hold m * k values");

        ggml_backend_buffer_type_t amx = plain ? nullptr : amx_buffer_type();
        ctx_holder wctx({ ggml_tensor_overhead() * 2, nullptr, true });
        ggml_tensor * w = ggml_new_tensor_2d(wctx.ctx, GGML_TYPE_F16, K, N);
        buffer_holder wbuf;
        wbuf.buf = ggml_backend_alloc_ctx_tensors_from_buft(wctx.ctx, amx ? amx : ggml_backend_cpu_buffer_type());
        if (!wbuf.buf) throw CodedError("ERR_NATIVE", "weight buffer allocation failed");
        ggml_backend_buffer_set_usage(wbuf.buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        ggml_backend_tensor_set(w, w_in.Data(), 0, ggml_nbytes(w));

        const size_t bytes = (size_t) (M * K + M * N) * sizeof(float) + ggml_tensor_overhead() * 4 + ggml_graph_overhead() + 1024;
        ctx_holder cctx({ bytes, nullptr, false });
        ggml_tensor * x = ggml_new_tensor_2d(cctx.ctx, GGML_TYPE_F32, K, M);
        std::memcpy(x->data, x_in.Data(), ggml_nbytes(x));
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

        Napi::Float32Array res = Napi::Float32Array::New(env, (size_t) (M * N));
        std::memcpy(res.Data(), out->data, ggml_nbytes(out));
        Napi::Object r = Napi::Object::New(env);
        r.Set("out", res);
        r.Set("amx", Napi::Boolean::New(env, amx != nullptr));
        r.Set("seconds", Napi::Number::New(env, best));
        return r;
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_NATIVE", e.what());
    }
}

} // namespace

void matmul_binding_register(Napi::Env env, Napi::Object exports) {
    exports.Set("matmulF16Compute", Napi::Function::New(env, MatmulF16Compute));
}
