// Development-only JS surface of the fused CPU attention (native/kernels/cpu), built only with
// LLAMAFUSE_DEV_BINDINGS (tests and benchmarks; not in published or prebuilt addons). The public
// counters are in attention_stats_binding.cpp.
//   attentionForcePortable(on)               run the portable inner loops on AVX2 machines too (tests)
//   attentionCompute(spec)                   SYNCHRONOUS, tests only: one FLASH_ATTN_EXT node
//                                            built from typed arrays, computed by ggml on a fresh
//                                            threadpool registered fused or not (or ggml's use_ref
//                                            path); returns the output. Keep shapes small.
//   attentionBenchCreate(spec) -> Promise<session>, attentionBenchRun(session, mode, reps)
//   -> Promise<{wallUs, cpuUs}> per op per rep, attentionBenchFree(session), measureReadBandwidth(...)
// Tensors are laid out as llama.cpp lays them out: q [DK, n_head, n_tokens, n_stream] and K/V
// caches [D, n_head_kv, n_kv, n_stream], permuted to the op's order, so the kernels see the
// same (non-contiguous) views they see inside a model.
#include "attention_binding.h"
#include "common.h"
#include "kernels/cpu/fattn_cpu.h"
#include "kernels/cpu/fattn_hook.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

using namespace llamafuse;

namespace {

enum class run_mode { fused, ggml, ref };

run_mode parse_mode(const std::string & m) {
    if (m == "fused") return run_mode::fused;
    if (m == "ggml") return run_mode::ggml;
    if (m == "ref") return run_mode::ref;
    throw CodedError("ERR_INVALID_OPTION", "attention mode must be fused, ggml or ref: " + m);
}

ggml_type parse_kv_type(const std::string & t) {
    if (t == "f16") return GGML_TYPE_F16;
    if (t == "q8_0") return GGML_TYPE_Q8_0;
    if (t == "f32") return GGML_TYPE_F32;  // ggml takes it; our kernels decline it
    throw CodedError("ERR_INVALID_OPTION", "kvType must be f16, q8_0 or f32: " + t);
}

struct op_shape {
    int64_t DK, DV, n_tokens, n_head, n_head_kv, n_kv, n_stream;
    ggml_type type;
    int64_t mask_rows, mask_heads;  // 0 rows: no mask
    bool sinks;
    float scale, max_bias, softcap;
};

// Owns a ggml context holding q, `layers` distinct K/V caches, mask, sinks and one
// FLASH_ATTN_EXT node per layer, in one graph.
struct attn_graph {
    ggml_context * ctx = nullptr;
    ggml_cgraph * graph = nullptr;
    ggml_tensor * q = nullptr, * mask = nullptr, * sinks = nullptr;
    std::vector<ggml_tensor *> k, v, out;
    op_shape shape{};

    attn_graph(const op_shape & s, int layers) : shape(s) {
        const size_t kb = ggml_row_size(s.type, s.DK) * s.n_head_kv * s.n_kv * s.n_stream;
        const size_t vb = ggml_row_size(s.type, s.DV) * s.n_head_kv * s.n_kv * s.n_stream;
        const size_t ob = sizeof(float) * s.DV * s.n_head * s.n_tokens * s.n_stream;
        size_t bytes = sizeof(float) * s.DK * s.n_head * s.n_tokens * s.n_stream
                     + layers * (kb + vb + ob)
                     + sizeof(uint16_t) * s.n_kv * std::max<int64_t>(1, s.mask_rows) * s.mask_heads * s.n_stream
                     + sizeof(float) * s.n_head
                     + (size_t) (8 + 6 * layers) * (ggml_tensor_overhead() + 64)
                     + ggml_graph_overhead_custom(8 + 8 * layers, false) + (1 << 16);
        ggml_init_params ip = { bytes, nullptr, false };
        ctx = ggml_init(ip);
        if (!ctx) throw CodedError("ERR_NATIVE", "ggml_init failed (out of memory?)");
        graph = ggml_new_graph_custom(ctx, 8 + 8 * layers, false);
        q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, s.DK, s.n_head, s.n_tokens, s.n_stream);
        if (s.mask_rows > 0) mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, s.n_kv, s.mask_rows, s.mask_heads, s.n_stream);
        if (s.sinks) sinks = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, s.n_head);
        ggml_tensor * qp = ggml_permute(ctx, q, 0, 2, 1, 3);
        for (int l = 0; l < layers; l++) {
            k.push_back(ggml_new_tensor_4d(ctx, s.type, s.DK, s.n_head_kv, s.n_kv, s.n_stream));
            v.push_back(ggml_new_tensor_4d(ctx, s.type, s.DV, s.n_head_kv, s.n_kv, s.n_stream));
            ggml_tensor * o = ggml_flash_attn_ext(ctx, qp, ggml_permute(ctx, k.back(), 0, 2, 1, 3),
                                                  ggml_permute(ctx, v.back(), 0, 2, 1, 3), mask,
                                                  s.scale, s.max_bias, s.softcap);
            ggml_flash_attn_ext_add_sinks(o, sinks);
            ggml_flash_attn_ext_set_prec(o, GGML_PREC_F32);
            out.push_back(o);
            ggml_build_forward_expand(graph, o);
        }
    }
    ~attn_graph() { if (ctx) ggml_free(ctx); }
    attn_graph(const attn_graph &) = delete;
    attn_graph & operator=(const attn_graph &) = delete;

    // Computes the whole graph on tp; returns seconds spent in ggml_graph_compute (wall) and,
    // in *cpu, the process CPU time it took (all threads, spinning included): on a machine
    // shared with other load, CPU time of a one-thread run is the steadier measure.
    double compute(ggml_threadpool * tp, int threads, run_mode mode, std::vector<uint8_t> & work, double * cpu = nullptr) {
        attention_set_fused(tp, mode == run_mode::fused);
        ggml_cplan plan = ggml_graph_plan(graph, threads, tp);
        if (work.size() < plan.work_size) work.resize(plan.work_size);
        plan.work_data = work.data();
        plan.use_ref = mode == run_mode::ref;
        timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        const auto t0 = std::chrono::steady_clock::now();
        const ggml_status st = ggml_graph_compute(graph, &plan);
        const auto t1 = std::chrono::steady_clock::now();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        if (cpu) *cpu = (double) (c1.tv_sec - c0.tv_sec) + 1e-9 * (double) (c1.tv_nsec - c0.tv_nsec);
        attention_set_fused(tp, false);
        if (st != GGML_STATUS_SUCCESS) throw CodedError("ERR_NATIVE", "ggml_graph_compute failed");
        return std::chrono::duration<double>(t1 - t0).count();
    }
};

struct threadpool_holder {
    ggml_threadpool * tp;
    explicit threadpool_holder(int n) {
        ggml_threadpool_params p = ggml_threadpool_params_default(n);
        tp = ggml_threadpool_new(&p);
        if (!tp) throw CodedError("ERR_NATIVE", "ggml_threadpool_new failed");
    }
    ~threadpool_holder() {
        attention_set_fused(tp, false);
        ggml_threadpool_free(tp);
    }
};

op_shape read_shape(const Napi::Object & o) {
    op_shape s;
    s.DK = get_i32(o, "DK");  s.DV = get_i32(o, "DV");
    s.n_tokens = get_i32(o, "nTokens");  s.n_head = get_i32(o, "nHead");
    s.n_head_kv = get_i32(o, "nHeadKv");  s.n_kv = get_i32(o, "nKv");  s.n_stream = get_i32(o, "nStream");
    s.type = parse_kv_type(get_str(o, "kvType"));
    s.mask_rows = get_i32(o, "maskRows");  s.mask_heads = get_i32(o, "maskHeads");
    s.sinks = get_bool(o, "sinks");
    s.scale = (float) get_f64(o, "scale");  s.max_bias = (float) get_f64(o, "maxBias");  s.softcap = (float) get_f64(o, "softcap");
    return s;
}

template <class T>
void copy_in(ggml_tensor * t, const Napi::Value & val, const char * name) {
    if (!val.IsTypedArray()) throw CodedError("ERR_INVALID_OPTION", std::string(name) + " must be a typed array");
    const Napi::TypedArray ta = val.As<Napi::TypedArray>();
    const size_t bytes = ta.ByteLength();
    if (bytes != ggml_nbytes(t)) {
        throw CodedError("ERR_INVALID_OPTION", std::string(name) + ": expected " + std::to_string(ggml_nbytes(t)) + " bytes, got " + std::to_string(bytes));
    }
    const uint8_t * src = (const uint8_t *) ta.ArrayBuffer().Data() + ta.ByteOffset();
    std::memcpy(t->data, src, bytes);
}

Napi::Value ForcePortable(const Napi::CallbackInfo & info) {
    cpu::fattn_force_portable(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
}

// Synchronous by design (test helper): small shapes only.
Napi::Value Compute(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    try {
        const Napi::Object spec = info[0].As<Napi::Object>();
        const op_shape s = read_shape(spec);
        const run_mode mode = parse_mode(get_str(spec, "mode"));
        const int threads = get_i32(spec, "threads");
        attn_graph g(s, 1);
        copy_in<float>(g.q, spec.Get("q"), "q");
        copy_in<uint8_t>(g.k[0], spec.Get("k"), "k");
        copy_in<uint8_t>(g.v[0], spec.Get("v"), "v");
        if (g.mask) copy_in<uint16_t>(g.mask, spec.Get("mask"), "mask");
        if (g.sinks) copy_in<float>(g.sinks, spec.Get("sinkValues"), "sinkValues");
        // poison the output: every element must be written
        float * o = (float *) g.out[0]->data;
        std::fill(o, o + ggml_nelements(g.out[0]), NAN);
        threadpool_holder tp(threads);
        std::vector<uint8_t> work;
        g.compute(tp.tp, threads, mode, work);
        Napi::Float32Array res = Napi::Float32Array::New(env, ggml_nelements(g.out[0]));
        std::memcpy(res.Data(), o, ggml_nbytes(g.out[0]));
        return res;
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_NATIVE", e.what());
    }
}

// ---- benchmark ---------------------------------------------------------------------------

// Random caches and queries; decode sees every key, prefill a causal mask over the last
// n_tokens positions (token t sees keys 0 .. n_kv - n_tokens + t).
struct bench_session {
    attn_graph graph;
    int threads;
    threadpool_holder pool;
    std::vector<uint8_t> work;
    std::atomic<bool> busy{false};

    bench_session(const op_shape & s, int layers, int threads_) : graph(s, layers), threads(threads_), pool(threads_) {
        // xorshift64: hundreds of MB of caches fill in a fraction of a second
        uint64_t x = 0x9E3779B97F4A7C15ull;
        auto u = [&x]() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            return (float) ((x >> 40) * (2.0 / 16777216.0) - 1.0);  // [-1, 1)
        };
        float * q = (float *) graph.q->data;
        for (int64_t i = 0; i < ggml_nelements(graph.q); i++) q[i] = u();
        std::vector<float> row(std::max(s.DK, s.DV));
        for (size_t l = 0; l < graph.k.size(); l++) {
            for (ggml_tensor * t : { graph.k[l], graph.v[l] }) {
                const int64_t n = t->ne[0];
                for (int64_t r = 0; r < ggml_nrows(t); r++) {
                    for (int64_t i = 0; i < n; i++) row[i] = u();
                    ggml_quantize_chunk(t->type, row.data(), (char *) t->data + r * t->nb[1], 0, 1, n, nullptr);
                }
            }
        }
        if (graph.mask) {
            ggml_fp16_t * m = (ggml_fp16_t *) graph.mask->data;
            const int64_t past = s.n_kv - s.n_tokens;
            for (int64_t t = 0; t < s.mask_rows; t++) {
                for (int64_t j = 0; j < s.n_kv; j++) m[t * s.n_kv + j] = ggml_fp32_to_fp16(j <= past + t ? 0.0f : -INFINITY);
            }
        }
    }
};

using session_ptr = std::shared_ptr<bench_session>;

class BenchCreateWorker : public PromiseWorker {
public:
    BenchCreateWorker(Napi::Env env, op_shape s, int layers, int threads)
        : PromiseWorker(env), s_(s), layers_(layers), threads_(threads) {}
protected:
    void run() override { session_ = std::make_shared<bench_session>(s_, layers_, threads_); }
    Napi::Value result(Napi::Env env) override {
        auto * holder = new session_ptr(session_);
        return Napi::External<session_ptr>::New(env, holder, [](Napi::Env, session_ptr * p) { delete p; });
    }
private:
    op_shape s_;
    int layers_, threads_;
    session_ptr session_;
};

class BenchRunWorker : public PromiseWorker {
public:
    BenchRunWorker(Napi::Env env, session_ptr s, run_mode mode, int reps)
        : PromiseWorker(env), s_(std::move(s)), mode_(mode), reps_(reps) {}
    ~BenchRunWorker() override { s_->busy = false; }
protected:
    void run() override {
        const double n_ops = (double) s_->graph.out.size();
        for (int i = 0; i < reps_; i++) {
            double cpu = 0;
            times_.push_back(1e6 * s_->graph.compute(s_->pool.tp, s_->threads, mode_, s_->work, &cpu) / n_ops);
            cpu_.push_back(1e6 * cpu / n_ops);
        }
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Float64Array wall = Napi::Float64Array::New(env, times_.size());
        std::copy(times_.begin(), times_.end(), wall.Data());
        Napi::Float64Array cpu = Napi::Float64Array::New(env, cpu_.size());
        std::copy(cpu_.begin(), cpu_.end(), cpu.Data());
        Napi::Object o = Napi::Object::New(env);
        o.Set("wallUs", wall);
        o.Set("cpuUs", cpu);
        return o;
    }
private:
    session_ptr s_;
    run_mode mode_;
    int reps_;
    std::vector<double> times_, cpu_;
};

session_ptr & session_of(const Napi::Value & v) {
    session_ptr * p = v.As<Napi::External<session_ptr>>().Data();
    if (!p || !*p) throw CodedError("ERR_DISPOSED", "attention bench session is disposed");
    return *p;
}

Napi::Value BenchCreate(const Napi::CallbackInfo & info) {
    const Napi::Object spec = info[0].As<Napi::Object>();
    try {
        auto * w = new BenchCreateWorker(info.Env(), read_shape(spec), get_i32(spec, "layers"), get_i32(spec, "threads"));
        return w->start();
    } catch (const CodedError & e) {
        return rejected(info.Env(), e.code, e.what());
    }
}

Napi::Value BenchRun(const Napi::CallbackInfo & info) {
    try {
        session_ptr s = session_of(info[0]);
        if (s->busy.exchange(true)) throw CodedError("ERR_BUSY", "attention bench session is already running");
        auto * w = new BenchRunWorker(info.Env(), s, parse_mode(info[1].As<Napi::String>().Utf8Value()), info[2].As<Napi::Number>().Int32Value());
        return w->start();
    } catch (const CodedError & e) {
        return rejected(info.Env(), e.code, e.what());
    }
}

// Drops the session; a run in flight keeps it alive until it finishes.
Napi::Value BenchFree(const Napi::CallbackInfo & info) {
    session_ptr * p = info[0].As<Napi::External<session_ptr>>().Data();
    if (p) p->reset();
    return info.Env().Undefined();
}

// Read bandwidth ceiling: `threads` threads each summing a disjoint slice of one buffer
// (far larger than the last-level cache). Returns GB/s per repetition.
class BandwidthWorker : public PromiseWorker {
public:
    BandwidthWorker(Napi::Env env, size_t bytes, int threads, int reps)
        : PromiseWorker(env), bytes_(bytes), threads_(threads), reps_(reps) {}
protected:
    void run() override {
        const size_t n = bytes_ / sizeof(uint64_t) / threads_ * threads_;
        std::vector<uint64_t> buf(n, 1);
        std::atomic<uint64_t> sink{0};
        for (int rep = 0; rep < reps_; rep++) {
            std::atomic<int> ready{0};
            std::atomic<bool> go{false};
            std::vector<std::thread> th;
            const size_t per = n / threads_;
            for (int t = 0; t < threads_; t++) {
                th.emplace_back([&, t] {
                    ready++;
                    while (!go.load(std::memory_order_acquire)) {}
                    const uint64_t * p = buf.data() + t * per;
                    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (size_t i = 0; i < per; i += 4) { a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]; }
                    sink += a0 + a1 + a2 + a3;
                });
            }
            while (ready.load() < threads_) {}
            const auto t0 = std::chrono::steady_clock::now();
            go.store(true, std::memory_order_release);
            for (auto & t : th) t.join();
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            gbs_.push_back((double) n * sizeof(uint64_t) / s / 1e9);
        }
        if (sink.load() == 42) gbs_.push_back(0);  // keeps the sums alive
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Float64Array a = Napi::Float64Array::New(env, gbs_.size());
        std::copy(gbs_.begin(), gbs_.end(), a.Data());
        return a;
    }
private:
    size_t bytes_;
    int threads_, reps_;
    std::vector<double> gbs_;
};

Napi::Value MeasureReadBandwidth(const Napi::CallbackInfo & info) {
    auto * w = new BandwidthWorker(info.Env(), (size_t) info[0].As<Napi::Number>().Int64Value(),
                                   info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value());
    return w->start();
}

} // namespace

void attention_binding_register(Napi::Env env, Napi::Object exports) {
    attention_hook_install();  // idempotent; addon init installs it too
    ggml_cpu_init();  // fp16 tables for graphs computed outside a llama context
    exports.Set("attentionForcePortable", Napi::Function::New(env, ForcePortable));
    exports.Set("attentionCompute", Napi::Function::New(env, Compute));
    exports.Set("attentionBenchCreate", Napi::Function::New(env, BenchCreate));
    exports.Set("attentionBenchRun", Napi::Function::New(env, BenchRun));
    exports.Set("attentionBenchFree", Napi::Function::New(env, BenchFree));
    exports.Set("measureReadBandwidth", Napi::Function::New(env, MeasureReadBandwidth));
}
