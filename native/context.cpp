#include "context.h"

#include "abort_guard.h"
#include "attention_switch.h"
#include "log.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace llamafuse {

Napi::Function NativeContext::define(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeContext", {
        StaticMethod("create", &NativeContext::Create),
        InstanceMethod("forward", &NativeContext::Forward),
        InstanceMethod("kvRemove", &NativeContext::KvRemove),
        InstanceMethod("kvCopy", &NativeContext::KvCopy),
        InstanceMethod("kvKeepOnly", &NativeContext::KvKeepOnly),
        InstanceMethod("kvShift", &NativeContext::KvShift),
        InstanceMethod("kvClear", &NativeContext::KvClear),
        InstanceMethod("kvPositions", &NativeContext::KvPositions),
        InstanceMethod("getState", &NativeContext::GetState),
        InstanceMethod("setState", &NativeContext::SetState),
        InstanceMethod("setAttention", &NativeContext::SetAttention),
        InstanceMethod("dispose", &NativeContext::Dispose),
    });
    addon_data(env).set_constructor("NativeContext", fn);
    return fn;
}

NativeContext::NativeContext(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeContext>(info) {}

NativeContext::~NativeContext() { free_native(); }

void NativeContext::free_native() {
    // After a decode asserted part-way (broken_), llama.cpp's state (the KV cache, a half-run
    // graph, maybe compute threads still waiting at a barrier of that graph) is unknown, and
    // freeing it could touch that state or wait on those threads forever. Leave it allocated:
    // a bounded leak, once per such failure, instead of a crash or a hang.
    context_release(model_, ctx_, threadpool_, batch_, /*leak=*/broken_.load());
    std::vector<float>().swap(last_logits_);
}

bool NativeContext::try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true);
}
void NativeContext::release() { busy_.store(false); }

Napi::Value NativeContext::check_usable(Napi::Env env) {
    if (disposed()) return rejected(env, "ERR_DISPOSED", "the context is disposed");
    if (broken_.load()) return rejected(env, "ERR_CONTEXT_BROKEN", "this context is unusable: " + broken_why_);
    if (!try_acquire()) return rejected(env, "ERR_BUSY", "another operation is running on this context");
    return Napi::Value();
}

llama_pos NativeContext::next_pos(llama_seq_id seq) const {
    return llama_memory_seq_pos_max(llama_get_memory(ctx_), seq) + 1;
}

// ---- create --------------------------------------------------------------------------------

class ContextCreateWorker : public ContextCreateWorkerBase {
public:
    ContextCreateWorker(const Napi::CallbackInfo & info)
        : ContextCreateWorkerBase(info.Env(), info[0].As<Napi::Object>(), info[0].As<Napi::Object>(), info[1].As<Napi::Object>(),
                                  context_params_generation(info[1].As<Napi::Object>()), "context") {}

protected:
    Napi::Value result(Napi::Env env) override {
        Napi::Object obj = addon_data(env).construct("NativeContext");
        NativeContext * c = NativeContext::Unwrap(obj);
        c->vocab_ = model_->vocab();
        c->n_vocab_ = llama_vocab_n_tokens(c->vocab_);
        c->n_ctx_ = llama_n_ctx(ctx_);
        hand_over(c);
        c->last_logits_.assign((size_t) c->n_seq_ * c->n_vocab_, 0.0f);
        c->has_logits_.assign(c->n_seq_, 0);
        c->owed_.assign(c->n_seq_, -1);
        const char * force = getenv("LLAMAFUSE_TEST_DECODE_ABORT");
        c->force_decode_abort_ = force && *force && *force != '0';
        Napi::Object out = Napi::Object::New(env);
        out.Set("context", obj);
        out.Set("contextSize", c->n_ctx_);
        out.Set("batchSize", c->n_batch_);
        out.Set("ubatchSize", llama_n_ubatch(c->ctx_));
        out.Set("sequences", c->n_seq_);
        c->decide_shift(params_.type_k);
        out.Set("canShift", c->can_shift_);
        return out;
    }
};

Napi::Value NativeContext::Create(const Napi::CallbackInfo & info) {
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) return rejected(info.Env(), "ERR_DISPOSED", "the model is disposed");
    // llama.cpp reserves one output row per sequence in a batch and asserts
    // (n_outputs_max <= cparams.n_outputs_max) when a batch cannot hold one token of each.
    const Napi::Object o = info[1].As<Napi::Object>();
    const uint32_t n_batch = get_u32(o, "batchSize"), n_seq = get_u32(o, "sequences");
    if (n_batch < n_seq) {
        return rejected(info.Env(), "ERR_INVALID_OPTION", "batchSize (" + std::to_string(n_batch) + ") must be at least sequences (" +
                        std::to_string(n_seq) + "): a batch holds at least one token of each sequence");
    }
    return (new ContextCreateWorker(info))->start();
}

// ---- decode --------------------------------------------------------------------------------

void NativeContext::decode(const std::vector<llama_token> & tokens, const std::vector<llama_seq_id> & seq_ids,
                           const std::vector<uint8_t> & want, float * out, const int32_t * abort_flag) {
    llama_memory_t mem = llama_get_memory(ctx_);
    const size_t n = tokens.size();

    // Positions continue each sequence; a sequence may not outgrow the context.
    std::vector<llama_pos> start(n_seq_, -1), next(n_seq_, 0);
    std::vector<size_t> count(n_seq_, 0);
    for (size_t i = 0; i < n; ++i) {
        llama_seq_id s = seq_ids[i];
        if (start[s] < 0) next[s] = start[s] = llama_memory_seq_pos_max(mem, s) + 1;
        ++count[s];
    }
    for (uint32_t s = 0; s < n_seq_; ++s) {
        if (start[s] >= 0 && (size_t) start[s] + count[s] > n_ctx_) {
            throw CodedError("ERR_CONTEXT_FULL", "sequence " + std::to_string(s) + " holds " + std::to_string(start[s]) +
                " of " + std::to_string(n_ctx_) + " positions; " + std::to_string(count[s]) +
                " more tokens do not fit (nothing was decoded; the context is unchanged)");
        }
    }
    auto rollback = [&]() {
        for (uint32_t s = 0; s < n_seq_; ++s)
            if (start[s] >= 0) llama_memory_seq_rm(mem, (llama_seq_id) s, start[s], -1);
    };
    auto aborted = [&]() { return abort_flag && __atomic_load_n(abort_flag, __ATOMIC_ACQUIRE) != 0; };

    abort_flag_ = abort_flag;
    std::vector<int64_t> last_row(n_seq_, -1);
    size_t row = 0;
    for (size_t i0 = 0; i0 < n; i0 += n_batch_) {
        const size_t i1 = std::min(n, i0 + n_batch_);
        if (aborted()) {
            rollback();
            abort_flag_ = nullptr;
            throw CodedError("ERR_ABORTED", "forward was aborted (the context is unchanged)");
        }
        batch_.n_tokens = (int32_t) (i1 - i0);
        for (size_t i = i0; i < i1; ++i) {
            const size_t j = i - i0;
            llama_seq_id s = seq_ids[i];
            batch_.token[j] = tokens[i];
            batch_.pos[j] = next[s]++;
            batch_.n_seq_id[j] = 1;
            batch_.seq_id[j][0] = s;
            batch_.logits[j] = want[i];
        }
        int32_t r;
        try {
            // The guard turns a GGML_ASSERT reached on this thread (graph building, and ggml's
            // compute thread 0, which is this thread) into an exception. That is safe to unwind:
            // llama_decode holds no lock of ours or llama.cpp's here (a llama_context has no
            // mutex; ggml's threadpool takes its mutex only to kick off and stop its workers,
            // which asserts nothing), and the exception frees only this call's own RAII objects.
            // What it leaves behind is unknown, so the context is marked broken, never decoded
            // again and never freed (free_native). Asserts on ggml's other compute threads still
            // abort: inputs that could reach them are refused before llama.cpp sees them
            // (model_checks.h at load, the checks in Create and the KV methods here).
            AbortGuard guard;
            // Test seam: LLAMAFUSE_TEST_DECODE_ABORT=1 makes every decode fail an assertion here,
            // so the tests can check this path end to end (no valid model reaches one any more).
            if (force_decode_abort_) GGML_ABORT("forced by LLAMAFUSE_TEST_DECODE_ABORT");
            r = llama_decode(ctx_, batch_);
        } catch (const GgmlAbort & e) {
            abort_flag_ = nullptr;
            broken_why_ = std::string("llama.cpp failed an assertion during a forward (") + e.what() + ")";
            broken_.store(true);
            throw CodedError("ERR_CONTEXT_BROKEN", broken_why_ + "; the context cannot be used again: dispose it");
        }
        if (r != 0) {
            rollback();
            abort_flag_ = nullptr;
            std::string why = log_last_error();
            switch (r) {
                case 1: throw CodedError("ERR_CONTEXT_FULL", "no room in the KV cache for this batch (the context is unchanged; remove tokens or use a larger contextSize)");
                case 2: throw CodedError("ERR_ABORTED", "forward was aborted (the context is unchanged)");
                case -1: throw CodedError("ERR_INVALID_BATCH", "llama.cpp rejected the batch" + (why.empty() ? std::string() : ": " + why));
                default: throw CodedError("ERR_DECODE", "llama_decode failed with " + std::to_string(r) + (why.empty() ? std::string() : ": " + why));
            }
        }
        for (size_t i = i0; i < i1; ++i) {
            if (!want[i]) continue;
            const float * l = llama_get_logits_ith(ctx_, (int32_t) (i - i0));
            if (!l) {
                rollback();
                abort_flag_ = nullptr;
                throw CodedError("ERR_DECODE", "llama.cpp returned no logits for an output row");
            }
            memcpy(out + row * (size_t) n_vocab_, l, sizeof(float) * n_vocab_);
            last_row[seq_ids[i]] = (int64_t) row;
            ++row;
        }
    }
    abort_flag_ = nullptr;
    // Each sequence's sampling state: its newest output row, or none if its last token
    // produced no logits (sampling from an older row would be wrong).
    for (uint32_t s = 0; s < n_seq_; ++s) {
        if (start[s] < 0) continue;
        const bool last_token_has_row = [&] {
            for (size_t i = n; i-- > 0;) if (seq_ids[i] == (llama_seq_id) s) return want[i] != 0;
            return false;
        }();
        if (last_token_has_row) memcpy(last_logits_mut(s), out + last_row[s] * (size_t) n_vocab_, sizeof(float) * n_vocab_);
        set_has_logits((llama_seq_id) s, last_token_has_row);
    }
}

const float * NativeContext::logits_for(llama_seq_id seq, const int32_t * abort_flag) {
    if (has_logits_[seq]) return last_logits(seq);
    const llama_token token = owed_[seq];
    if (token < 0) return nullptr;
    // The owed token is the sequence's last: take it out and decode it again, with its row.
    const llama_pos last = next_pos(seq) - 1;
    if (last < 0 || !llama_memory_seq_rm(llama_get_memory(ctx_), seq, last, -1)) return nullptr;
    std::vector<float> row((size_t) n_vocab_);
    decode({token}, {seq}, {1}, row.data(), abort_flag); // sets has_logits_, clears owed_
    return last_logits(seq);
}

class ForwardWorker : public PromiseWorker {
public:
    ForwardWorker(const Napi::CallbackInfo & info, NativeContext * c) : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), c_(c) {
        Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
        Napi::Int32Array seqs = info[1].As<Napi::Int32Array>();
        Napi::Uint8Array want = info[2].As<Napi::Uint8Array>();
        Napi::Int32Array abort_flag = info[3].As<Napi::Int32Array>();
        tokens_.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
        seqs_.assign(seqs.Data(), seqs.Data() + seqs.ElementLength());
        want_.assign(want.Data(), want.Data() + want.ElementLength());
        size_t rows = 0;
        for (uint8_t w : want_) rows += w != 0;
        // The output lives in a JS-owned buffer from the start: written here off-thread,
        // seen by JS only after the promise resolves, never overwritten afterwards.
        out_ = Napi::Float32Array::New(info.Env(), rows * (size_t) c->n_vocab());
        out_ref_ = Napi::Persistent(out_.As<Napi::Object>());
        out_data_ = out_.Data();
        abort_flag_ = abort_flag.Data();
        abort_ref_ = Napi::Persistent(abort_flag.As<Napi::Object>());
    }
    ~ForwardWorker() override { c_->release(); }

protected:
    void run() override { c_->decode(tokens_, seqs_, want_, out_data_, abort_flag_); }
    Napi::Value result(Napi::Env env) override { return out_ref_.Value(); }

private:
    NativeContext * c_;
    std::vector<llama_token> tokens_;
    std::vector<llama_seq_id> seqs_;
    std::vector<uint8_t> want_;
    Napi::Float32Array out_;
    Napi::ObjectReference out_ref_;
    float * out_data_;
    const int32_t * abort_flag_;
    Napi::ObjectReference abort_ref_;
};

Napi::Value NativeContext::Forward(const Napi::CallbackInfo & info) {
    Napi::Value bad = check_usable(info.Env());
    if (!bad.IsEmpty()) return bad;
    return (new ForwardWorker(info, this))->start();
}

// ---- KV cache --------------------------------------------------------------------------------

void NativeContext::check_kv_op(Napi::Env env) {
    if (disposed()) throw make_error(env, "ERR_DISPOSED", "the context is disposed");
    if (broken_.load()) throw make_error(env, "ERR_CONTEXT_BROKEN", "this context is unusable: " + broken_why_);
    if (busy_.load()) throw make_error(env, "ERR_BUSY", "another operation is running on this context");
}

static llama_pos arg_pos(const Napi::CallbackInfo & info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

Napi::Value NativeContext::KvRemove(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    llama_seq_id s = arg_pos(info, 0);
    bool ok = llama_memory_seq_rm(llama_get_memory(ctx_), s, arg_pos(info, 1), arg_pos(info, 2));
    if (ok) {
        for (uint32_t i = 0; i < n_seq_; ++i) if (s < 0 || (llama_seq_id) i == s) set_has_logits((llama_seq_id) i, false);
    }
    return Napi::Boolean::New(info.Env(), ok);
}

Napi::Value NativeContext::KvCopy(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    llama_seq_id src = arg_pos(info, 0), dst = arg_pos(info, 1);
    llama_memory_seq_cp(llama_get_memory(ctx_), src, dst, arg_pos(info, 2), arg_pos(info, 3));
    // The copy continues from the same point: it inherits the source's next-token logits.
    has_logits_[dst] = has_logits_[src];
    owed_[dst] = owed_[src];
    if (has_logits_[src]) memcpy(last_logits_mut(dst), last_logits(src), sizeof(float) * n_vocab_);
    return info.Env().Undefined();
}

Napi::Value NativeContext::KvKeepOnly(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    llama_seq_id s = arg_pos(info, 0);
    llama_memory_seq_keep(llama_get_memory(ctx_), s);
    for (uint32_t i = 0; i < n_seq_; ++i) if ((llama_seq_id) i != s) set_has_logits((llama_seq_id) i, false);
    return info.Env().Undefined();
}

// Whether kv.shift is allowed, decided once at creation. llama.cpp's memory may say it can
// shift, and then the forward after a shift dies in ggml: a bf16 cache has no CPU rope kernel
// ("ops.cpp: fatal error"), and a quantized K cache is dequantized, roped and requantized in
// a way that crashes (SIGSEGV) unless the K head size is a multiple of 64 (the sizes for
// which llama.cpp also sets up its Hadamard rotation; 32, 96, 160 and 224 crashed).
void NativeContext::decide_shift(ggml_type type_k) {
    can_shift_ = llama_memory_can_shift(llama_get_memory(ctx_));
    const int32_t head = model_ ? model_->head_dim_k() : 0;
    if (!can_shift_) {
        no_shift_why_ = "this model's memory does not support position shifts";
    } else if (type_k == GGML_TYPE_BF16) {
        can_shift_ = false;
        no_shift_why_ = "a bf16 KV cache cannot be shifted (ggml's CPU rope has no bf16 kernel): use f16, f32 or q8_0";
    } else if (ggml_is_quantized(type_k) && (head <= 0 || head % 64 != 0)) {
        can_shift_ = false;
        no_shift_why_ = std::string("a ") + ggml_type_name(type_k) + " KV cache can be shifted only when the K head size is a multiple of 64 (this model's is " +
                        std::to_string(head) + "): use an f16 or f32 cache";
    }
}

static bool is_int_in(const Napi::Value & v, double lo, double hi, double & out) {
    if (!v.IsNumber()) return false;
    out = v.As<Napi::Number>().DoubleValue();
    return std::isfinite(out) && std::floor(out) == out && out >= lo && out <= hi;
}

Napi::Value NativeContext::KvShift(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_kv_op(env);
    if (!can_shift_) throw make_error(env, "ERR_UNSUPPORTED", no_shift_why_);
    llama_memory_t mem = llama_get_memory(ctx_);
    double seq, p0, p1, delta;
    if (!is_int_in(info[0], 0, n_seq_ - 1.0, seq)) throw make_error(env, "ERR_INVALID_SEQUENCE", "sequence must be an integer between 0 and " + std::to_string(n_seq_ - 1));
    if (!is_int_in(info[1], -1, INT32_MAX, p0) || !is_int_in(info[2], -1, INT32_MAX, p1)) {
        throw make_error(env, "ERR_INVALID_OPTION", "p0 and p1 must be integers between -1 (open end) and 2^31-1");
    }
    // Positions are int32 and a sequence may not pass the context's last position: a shift
    // that would move a cell past n_ctx - 1 (or overflow int32, which made cells vanish) is
    // refused; cells moved below 0 are dropped, as llama.cpp documents.
    if (!is_int_in(info[3], -(double) INT32_MAX, (double) INT32_MAX, delta)) {
        throw make_error(env, "ERR_INVALID_OPTION", "delta must be an integer between -(2^31-1) and 2^31-1");
    }
    const llama_seq_id s = (llama_seq_id) seq;
    const double pos_max = llama_memory_seq_pos_max(mem, s);
    const double top = p1 < 0 ? pos_max : std::min(pos_max, p1 - 1);
    if (pos_max >= 0 && top >= std::max(p0, 0.0) && top + delta > n_ctx_ - 1.0) {
        throw make_error(env, "ERR_INVALID_OPTION", "shifting by " + std::to_string((long long) delta) + " would move position " +
                         std::to_string((long long) top) + " past the context's last position (" + std::to_string(n_ctx_ - 1) + ")");
    }
    llama_memory_seq_add(mem, s, (llama_pos) p0, (llama_pos) p1, (llama_pos) delta);
    return env.Undefined();
}

Napi::Value NativeContext::KvClear(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    llama_memory_clear(llama_get_memory(ctx_), true);
    for (uint32_t i = 0; i < n_seq_; ++i) set_has_logits((llama_seq_id) i, false);
    return info.Env().Undefined();
}

Napi::Value NativeContext::KvPositions(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    llama_seq_id s = arg_pos(info, 0);
    llama_memory_t mem = llama_get_memory(ctx_);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("min", llama_memory_seq_pos_min(mem, s));
    o.Set("max", llama_memory_seq_pos_max(mem, s));
    return o;
}

// ---- state -----------------------------------------------------------------------------------
// Native blob: [u64 n_llama][llama.cpp state bytes][u32 n][n × (i32 seq, f32 × n_vocab)]
// The trailer carries llamafuse's per-sequence next-token logits, so sampling works right
// after a load. src/state.ts wraps the blob in a header that identifies the model.

class GetStateWorker : public PromiseWorker {
public:
    GetStateWorker(const Napi::CallbackInfo & info, NativeContext * c)
        : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), c_(c), seq_(info[0].As<Napi::Number>().Int32Value()) {}
    ~GetStateWorker() override { c_->release(); }

protected:
    void run() override {
        llama_context * ctx = c_->ctx();
        // Owed logits are paid first, so that the state holds them like any others.
        for (uint32_t s = 0; s < c_->n_seq(); ++s) {
            if (seq_ < 0 || (llama_seq_id) s == seq_) c_->logits_for((llama_seq_id) s);
        }
        size_t n = seq_ < 0 ? llama_state_get_size(ctx) : llama_state_seq_get_size(ctx, seq_);
        std::vector<llama_seq_id> seqs;
        for (uint32_t s = 0; s < c_->n_seq(); ++s)
            if ((seq_ < 0 || (llama_seq_id) s == seq_) && c_->last_logits(s)) seqs.push_back(s);
        const size_t row = sizeof(int32_t) + sizeof(float) * c_->n_vocab();
        blob_.resize(sizeof(uint64_t) + n + sizeof(uint32_t) + seqs.size() * row);
        uint8_t * p = blob_.data() + sizeof(uint64_t);
        size_t got = seq_ < 0 ? llama_state_get_data(ctx, p, n) : llama_state_seq_get_data(ctx, p, n, seq_);
        if (got == 0 && n != 0) throw CodedError("ERR_NATIVE", "llama.cpp could not serialize the state");
        uint64_t n64 = got;
        memcpy(blob_.data(), &n64, sizeof n64);
        p += got;
        uint32_t cnt = (uint32_t) seqs.size();
        memcpy(p, &cnt, sizeof cnt);
        p += sizeof cnt;
        for (llama_seq_id s : seqs) {
            memcpy(p, &s, sizeof s);
            memcpy(p + sizeof s, c_->last_logits(s), sizeof(float) * c_->n_vocab());
            p += row;
        }
        blob_.resize(p - blob_.data());
    }
    Napi::Value result(Napi::Env env) override { return Napi::Buffer<uint8_t>::Copy(env, blob_.data(), blob_.size()); }

private:
    NativeContext * c_;
    llama_seq_id seq_;
    std::vector<uint8_t> blob_;
};

Napi::Value NativeContext::GetState(const Napi::CallbackInfo & info) {
    Napi::Value bad = check_usable(info.Env());
    if (!bad.IsEmpty()) return bad;
    return (new GetStateWorker(info, this))->start();
}

class SetStateWorker : public PromiseWorker {
public:
    SetStateWorker(const Napi::CallbackInfo & info, NativeContext * c)
        : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), c_(c) {
        Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
        blob_.assign(b.Data(), b.Data() + b.ElementLength());
        seq_ = info[1].As<Napi::Number>().Int32Value();
    }
    ~SetStateWorker() override { c_->release(); }

protected:
    void run() override {
        llama_context * ctx = c_->ctx();
        const size_t row = sizeof(int32_t) + sizeof(float) * c_->n_vocab();
        uint64_t n = 0;
        // [u64 n][n bytes][u32 count]: at least 12 bytes (a shorter blob made the bound below
        // wrap around), and llama.cpp's part is never empty (an empty one "loaded" and left the
        // previous cache in place).
        if (blob_.size() < sizeof n + sizeof(uint32_t)) bad();
        memcpy(&n, blob_.data(), sizeof n);
        if (n == 0 || n > blob_.size() - sizeof n - sizeof(uint32_t)) bad();
        const uint8_t * p = blob_.data() + sizeof n;
        size_t used;
        {
            AbortGuard guard;
            try {
                used = seq_ < 0 ? llama_state_set_data(ctx, p, n) : llama_state_seq_set_data(ctx, p, n, seq_);
            } catch (const std::exception &) {
                used = 0;
            }
        }
        if (used == 0 && n != 0) {
            llama_memory_clear(llama_get_memory(ctx), true);
            for (uint32_t s = 0; s < c_->n_seq(); ++s) c_->set_has_logits(s, false);
            throw CodedError("ERR_STATE_MISMATCH", "llama.cpp could not load this state into this context (its memory was cleared)");
        }
        p += n;
        uint32_t cnt = 0;
        memcpy(&cnt, p, sizeof cnt);
        p += sizeof cnt;
        if ((size_t) (blob_.data() + blob_.size() - p) < (size_t) cnt * row) bad();
        if (seq_ < 0) for (uint32_t s = 0; s < c_->n_seq(); ++s) c_->set_has_logits(s, false);
        else c_->set_has_logits(seq_, false);
        for (uint32_t i = 0; i < cnt; ++i, p += row) {
            llama_seq_id s;
            memcpy(&s, p, sizeof s);
            llama_seq_id dst = seq_ < 0 ? s : seq_;
            if (dst < 0 || (uint32_t) dst >= c_->n_seq()) continue;
            memcpy(c_->last_logits_mut(dst), p + sizeof s, sizeof(float) * c_->n_vocab());
            c_->set_has_logits(dst, true);
        }
    }

private:
    [[noreturn]] void bad() { throw CodedError("ERR_STATE_MISMATCH", "the state data is truncated or corrupt"); }
    NativeContext * c_;
    std::vector<uint8_t> blob_;
    llama_seq_id seq_;
};

Napi::Value NativeContext::SetState(const Napi::CallbackInfo & info) {
    Napi::Value bad = check_usable(info.Env());
    if (!bad.IsEmpty()) return bad;
    return (new SetStateWorker(info, this))->start();
}

// ---- attention switch, dispose -----------------------------------------------------------------

Napi::Value NativeContext::SetAttention(const Napi::CallbackInfo & info) {
    check_kv_op(info.Env());
    attention_switch_set(threadpool_, info[0].As<Napi::String>().Utf8Value() == "fused");
    return info.Env().Undefined();
}

Napi::Value NativeContext::Dispose(const Napi::CallbackInfo & info) {
    if (busy_.load()) throw make_error(info.Env(), "ERR_BUSY", "an operation is running on this context");
    free_native();
    model_ref_.Reset();
    return info.Env().Undefined();
}

} // namespace llamafuse
