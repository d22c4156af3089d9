#include "embedding.h"

#include "log.h"

#include "gguf.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

namespace llamafuse {

Napi::Function NativeEmbeddingContext::define(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeEmbeddingContext", {
        InstanceMethod("init", &NativeEmbeddingContext::Init),
        InstanceMethod("embed", &NativeEmbeddingContext::Embed),
        InstanceMethod("dispose", &NativeEmbeddingContext::Dispose),
    });
    // JS makes the instance (new NativeEmbeddingContext()) and init() fills it, so no
    // constructor reference is kept anywhere (per-environment safe by construction).
    return fn;
}

NativeEmbeddingContext::NativeEmbeddingContext(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeEmbeddingContext>(info) {}

NativeEmbeddingContext::~NativeEmbeddingContext() { free_native(); }

void NativeEmbeddingContext::free_native() { context_release(model_, ctx_, threadpool_, batch_); }

void NativeEmbeddingContext::clear_memory() {
    // Encoder-only models (BERT) have no memory at all: each decode stands alone.
    llama_memory_t mem = llama_get_memory(ctx_);
    if (mem) llama_memory_clear(mem, true);
}

// Whether the GGUF has a classification head (what rank pooling applies after pooling).
// llama.cpp has no API for a model's tensors, so read the file's header (no data).
static bool gguf_has_rank_head(const std::string & path) {
    gguf_init_params p{};
    p.no_alloc = true;
    p.ctx = nullptr;
    gguf_context * g = gguf_init_from_file(path.c_str(), p);
    if (!g) return false;
    const bool has = gguf_find_tensor(g, "cls.weight") >= 0 || gguf_find_tensor(g, "cls.output.weight") >= 0;
    gguf_free(g);
    return has;
}

// ---- create --------------------------------------------------------------------------------

// The shared parameters with embeddings on and the pooling src/ resolved. One ubatch per decode:
// a non-causal (BERT) batch cannot be split, and a pooled sequence must not straddle two ubatches.
static llama_context_params embedding_params(const Napi::Object & o) {
    llama_context_params p = context_params_shared(o);
    p.embeddings = true;
    p.pooling_type = (enum llama_pooling_type) get_i32(o, "pooling");
    p.n_ubatch = p.n_batch;
    return p;
}

class EmbeddingCreateWorker : public ContextCreateWorkerBase {
public:
    EmbeddingCreateWorker(const Napi::CallbackInfo & info, NativeEmbeddingContext * c)
        : ContextCreateWorkerBase(info.Env(), info.This().As<Napi::Object>(), info[0].As<Napi::Object>(), info[1].As<Napi::Object>(),
                                  embedding_params(info[1].As<Napi::Object>()), "embedding context"),
          c_(c), path_(get_str(info[1].As<Napi::Object>(), "modelPath")) {}
    ~EmbeddingCreateWorker() override { c_->release(); }

protected:
    void run() override {
        rank_head_ = gguf_has_rank_head(path_);
        ContextCreateWorkerBase::run();
    }

    Napi::Value result(Napi::Env env) override {
        NativeEmbeddingContext * c = c_;
        const llama_model * m = model_->model();
        const llama_vocab * vocab = model_->vocab();
        c->pooling_ = llama_pooling_type(ctx_);
        c->dim_ = c->pooling_ == LLAMA_POOLING_TYPE_RANK ? (int32_t) llama_model_n_cls_out(m) : llama_model_n_embd_out(m);
        hand_over(c);

        Napi::Object out = Napi::Object::New(env);
        out.Set("contextSize", llama_n_ctx(c->ctx_));
        out.Set("batchSize", c->n_batch_);
        out.Set("sequences", c->n_seq_);
        out.Set("pooling", (int32_t) c->pooling_);
        out.Set("dimensions", c->dim_);
        out.Set("hasRankHead", rank_head_);
        const char * tmpl = llama_model_chat_template(m, "rerank");
        out.Set("rerankTemplate", tmpl ? Napi::Value(Napi::String::New(env, tmpl)) : env.Null());
        out.Set("bos", llama_vocab_bos(vocab));
        out.Set("eos", llama_vocab_eos(vocab));
        out.Set("sep", llama_vocab_sep(vocab));
        out.Set("addBos", llama_vocab_get_add_bos(vocab));
        out.Set("addEos", llama_vocab_get_add_eos(vocab));
        out.Set("addSep", llama_vocab_get_add_sep(vocab));
        return out;
    }

private:
    NativeEmbeddingContext * c_;
    std::string path_;
    bool rank_head_ = false;
};

// init(model: NativeModel, options): creates the llama_context of this (empty) instance.
Napi::Value NativeEmbeddingContext::Init(const Napi::CallbackInfo & info) {
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
        return rejected(info.Env(), "ERR_INVALID_OPTION", "init(model: NativeModel, options: object)");
    }
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) return rejected(info.Env(), "ERR_DISPOSED", "the model is disposed");
    if (ctx_ || initialized_) return rejected(info.Env(), "ERR_BUSY", "this embedding context is already initialized");
    if (!try_acquire()) return rejected(info.Env(), "ERR_BUSY", "this embedding context is being initialized");
    initialized_ = true;
    return (new EmbeddingCreateWorker(info, this))->start();
}

// ---- embed ---------------------------------------------------------------------------------

size_t NativeEmbeddingContext::out_floats(const std::vector<uint32_t> & offsets) const {
    const size_t n = offsets.size() - 1;
    const size_t rows = pooling_ == LLAMA_POOLING_TYPE_NONE ? offsets[n] : n;
    return rows * (size_t) dim_;
}

void NativeEmbeddingContext::embed(const std::vector<llama_token> & tokens, const std::vector<uint32_t> & offsets, float * out,
                                   const int32_t * abort_flag) {
    const size_t n = offsets.size() - 1;
    auto aborted = [&]() { return abort_flag && __atomic_load_n(abort_flag, __ATOMIC_ACQUIRE) != 0; };
    auto len_of = [&](size_t k) { return offsets[k + 1] - offsets[k]; };
    abort_flag_ = abort_flag;
    clear_memory();
    // First-fit decreasing: longest texts first, each batch topped up with the longest that
    // still fit. Fewer, fuller batches than packing in input order; the results do not depend
    // on the packing (each text is its own sequence and the memory is cleared per batch).
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len_of(a) > len_of(b); });
    std::vector<uint8_t> done(n, 0);
    std::vector<size_t> members; // this batch's texts; sequence id = position here
    size_t first_left = 0;       // first index of `order` not yet embedded
    while (first_left < n) {
        if (aborted()) {
            abort_flag_ = nullptr;
            throw CodedError("ERR_ABORTED", "embedding was aborted");
        }
        members.clear();
        batch_.n_tokens = 0;
        for (size_t o = first_left; o < n && members.size() < n_seq_; ++o) {
            const size_t k = order[o];
            if (done[k]) continue;
            const uint32_t room = n_batch_ - (uint32_t) batch_.n_tokens;
            if (len_of(order[n - 1]) > room) break; // not even the shortest fits
            const uint32_t len = len_of(k);
            if (len > room) continue;
            const llama_seq_id s = (llama_seq_id) members.size();
            for (uint32_t j = 0; j < len; ++j) {
                const int32_t b = batch_.n_tokens++;
                batch_.token[b] = tokens[offsets[k] + j];
                batch_.pos[b] = (llama_pos) j;
                batch_.n_seq_id[b] = 1;
                batch_.seq_id[b][0] = s;
                batch_.logits[b] = 1;
            }
            done[k] = 1;
            members.push_back(k);
        }
        while (first_left < n && done[order[first_left]]) ++first_left;
        if (members.empty()) {
            abort_flag_ = nullptr;
            throw CodedError("ERR_INVALID_BATCH", "a text is longer than the batch size"); // src/embed validates this first
        }
        log_clear_error();
        const int32_t r = llama_decode(ctx_, batch_);
        if (r != 0) {
            clear_memory();
            abort_flag_ = nullptr;
            if (aborted() || r == 2) throw CodedError("ERR_ABORTED", "embedding was aborted");
            std::string why = log_last_error();
            throw CodedError("ERR_DECODE", "llama_decode failed with " + std::to_string(r) + (why.empty() ? std::string() : ": " + why));
        }
        int32_t row = 0; // this batch's output row of the current token (pooling none)
        for (size_t m = 0; m < members.size(); ++m) {
            const size_t k = members[m];
            const llama_seq_id s = (llama_seq_id) m;
            if (pooling_ == LLAMA_POOLING_TYPE_NONE) {
                const uint32_t len = offsets[k + 1] - offsets[k];
                for (uint32_t j = 0; j < len; ++j, ++row) {
                    const float * e = llama_get_embeddings_ith(ctx_, row);
                    if (!e) {
                        clear_memory();
                        abort_flag_ = nullptr;
                        throw CodedError("ERR_DECODE", "llama.cpp returned no embedding for a token");
                    }
                    memcpy(out + ((size_t) offsets[k] + j) * dim_, e, sizeof(float) * dim_);
                }
            } else {
                const float * e = llama_get_embeddings_seq(ctx_, s);
                if (!e) {
                    clear_memory();
                    abort_flag_ = nullptr;
                    throw CodedError("ERR_DECODE", "llama.cpp returned no pooled embedding for a sequence");
                }
                memcpy(out + k * (size_t) dim_, e, sizeof(float) * dim_);
            }
        }
        clear_memory();
    }
    abort_flag_ = nullptr;
}

class EmbedWorker : public PromiseWorker {
public:
    EmbedWorker(const Napi::CallbackInfo & info, NativeEmbeddingContext * c) : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), c_(c) {
        Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
        Napi::Uint32Array offsets = info[1].As<Napi::Uint32Array>();
        Napi::Int32Array abort_flag = info[2].As<Napi::Int32Array>();
        tokens_.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
        offsets_.assign(offsets.Data(), offsets.Data() + offsets.ElementLength());
        // The output lives in a JS-owned buffer from the start: written here off-thread,
        // seen by JS only after the promise resolves.
        out_ = Napi::Float32Array::New(info.Env(), c->out_floats(offsets_));
        out_ref_ = Napi::Persistent(out_.As<Napi::Object>());
        out_data_ = out_.Data();
        abort_flag_ = abort_flag.Data();
        abort_ref_ = Napi::Persistent(abort_flag.As<Napi::Object>());
    }
    ~EmbedWorker() override { c_->release(); }

protected:
    void run() override { c_->embed(tokens_, offsets_, out_data_, abort_flag_); }
    Napi::Value result(Napi::Env env) override { return out_ref_.Value(); }

private:
    NativeEmbeddingContext * c_;
    std::vector<llama_token> tokens_;
    std::vector<uint32_t> offsets_;
    Napi::Float32Array out_;
    Napi::ObjectReference out_ref_;
    float * out_data_;
    const int32_t * abort_flag_;
    Napi::ObjectReference abort_ref_;
};

// embed(tokens: Int32Array, offsets: Uint32Array (n+1, offsets[0] = 0), abortFlag: Int32Array)
Napi::Value NativeEmbeddingContext::Embed(const Napi::CallbackInfo & info) {
    if (!ctx_) return rejected(info.Env(), "ERR_DISPOSED", "the embedding context is disposed (or was never initialized)");
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) {
        return rejected(info.Env(), "ERR_INVALID_OPTION", "embed(tokens: Int32Array, offsets: Uint32Array, abortFlag: Int32Array)");
    }
    Napi::Uint32Array offsets = info[1].As<Napi::Uint32Array>();
    const size_t n_off = offsets.ElementLength();
    const size_t n_tok = info[0].As<Napi::Int32Array>().ElementLength();
    if (n_off < 2 || offsets[0] != 0 || offsets[n_off - 1] != n_tok) {
        return rejected(info.Env(), "ERR_INVALID_BATCH", "offsets must start at 0 and end at the token count");
    }
    for (size_t i = 0; i + 1 < n_off; ++i) {
        if (offsets[i + 1] <= offsets[i] || offsets[i + 1] - offsets[i] > n_batch_) {
            return rejected(info.Env(), "ERR_INVALID_BATCH", "every text needs between 1 and batchSize tokens");
        }
    }
    if (!try_acquire()) return rejected(info.Env(), "ERR_BUSY", "another operation is running on this embedding context");
    return (new EmbedWorker(info, this))->start();
}

Napi::Value NativeEmbeddingContext::Dispose(const Napi::CallbackInfo & info) {
    if (busy_.load()) throw make_error(info.Env(), "ERR_BUSY", "an operation is running on this embedding context");
    free_native();
    model_ref_.Reset();
    return info.Env().Undefined();
}

} // namespace llamafuse
