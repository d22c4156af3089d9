// NativeContext: one llama_context with its own ggml threadpool. Forward (llama_decode over
// typed arrays, split into n_batch chunks, all-or-nothing) runs on a worker; KV-cache
// operations are quick and synchronous; one operation at a time is enforced here
// (busy flag) and queued in order by src/context.ts.
#pragma once

#include "common.h"
#include "context_core.h"
#include "model.h"

#include "ggml-cpu.h"
#include "llama.h"

#include <atomic>
#include <string>
#include <vector>

namespace llamafuse {

class NativeContext : public Napi::ObjectWrap<NativeContext> {
public:
    static Napi::Function define(Napi::Env env);
    NativeContext(const Napi::CallbackInfo & info);
    ~NativeContext() override;

    // ---- used by workers (off the main thread, while busy_ is held) ----
    llama_context * ctx() const { return ctx_; }
    const llama_vocab * vocab() const { return vocab_; }
    // False for a model whose vocabulary is of type "none" (or empty): llama.cpp's piece and
    // attribute lookups GGML_ASSERT on it, so text must not be asked of its tokens.
    bool has_tokenizer() const { return model_ && model_->has_tokenizer(); }
    int32_t n_vocab() const { return n_vocab_; }
    uint32_t n_ctx() const { return n_ctx_; }
    uint32_t n_seq() const { return n_seq_; }

    // Decodes tokens[i] for seq_ids[i] at the next positions of each sequence, in chunks of
    // n_batch. Rows for tokens with want[i] are copied, in order, to out (n_vocab floats
    // each). The last row of each sequence is also kept as that sequence's "last logits"
    // for sampling. All-or-nothing: on any failure the positions it added are removed.
    // Throws CodedError (ERR_CONTEXT_FULL, ERR_ABORTED, ERR_DECODE).
    void decode(const std::vector<llama_token> & tokens, const std::vector<llama_seq_id> & seq_ids,
                const std::vector<uint8_t> & want, float * out, const int32_t * abort_flag);

    const float * last_logits(llama_seq_id seq) const { return has_logits_[seq] ? &last_logits_[(size_t) seq * n_vocab_] : nullptr; }
    float * last_logits_mut(llama_seq_id seq) { return &last_logits_[(size_t) seq * n_vocab_]; }
    void set_has_logits(llama_seq_id seq, bool v) { has_logits_[seq] = v; owed_[seq] = -1; }
    // A generation's last token goes into the cache without its logits row (the generation
    // asks nothing of it; that row costs the whole output head, most of a small model's
    // decode). The sequence then owes them: logits_for() decodes that token again when
    // something asks (sample, a generation continuing from it, a state save), so to every
    // caller the sequence still has its next-token logits.
    void owe_logits(llama_seq_id seq, llama_token token) { has_logits_[seq] = 0; owed_[seq] = token; }
    // The sequence's next-token logits, paying what it owes first; nullptr when it has none.
    // Throws CodedError when that decode fails (the owed token is then gone from the cache).
    const float * logits_for(llama_seq_id seq, const int32_t * abort_flag = nullptr);
    llama_pos next_pos(llama_seq_id seq) const;

    // Busy flag: taken on the main thread before a worker is queued, released in its
    // completion callbacks (main thread). Native-side guard against racing llama.cpp.
    bool try_acquire();
    void release();
    bool disposed() const { return ctx_ == nullptr; }
    // Set when llama.cpp GGML_ASSERTed inside a decode (see decode()): from then on every call
    // rejects with ERR_CONTEXT_BROKEN and dispose releases the context without calling into
    // llama.cpp.
    bool broken() const { return broken_.load(); }
    Napi::Value check_usable(Napi::Env env); // a rejected promise, or empty when usable

private:
    static Napi::Value Create(const Napi::CallbackInfo & info);
    Napi::Value Forward(const Napi::CallbackInfo & info);
    Napi::Value KvRemove(const Napi::CallbackInfo & info);
    Napi::Value KvCopy(const Napi::CallbackInfo & info);
    Napi::Value KvKeepOnly(const Napi::CallbackInfo & info);
    Napi::Value KvShift(const Napi::CallbackInfo & info);
    Napi::Value KvClear(const Napi::CallbackInfo & info);
    Napi::Value KvPositions(const Napi::CallbackInfo & info);
    Napi::Value GetState(const Napi::CallbackInfo & info);
    Napi::Value SetState(const Napi::CallbackInfo & info);
    Napi::Value SetAttention(const Napi::CallbackInfo & info);
    Napi::Value SetThreads(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    void check_kv_op(Napi::Env env);
    void decide_shift(ggml_type type_k);
    void free_native();

    friend class ContextCreateWorker;
    friend class ContextCreateWorkerBase;

    Napi::ObjectReference model_ref_;
    NativeModel * model_ = nullptr;
    llama_context * ctx_ = nullptr;
    ggml_threadpool * threadpool_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    llama_batch batch_{};
    int32_t n_vocab_ = 0;
    uint32_t n_ctx_ = 0, n_batch_ = 0, n_seq_ = 0;
    std::vector<float> last_logits_;
    std::vector<uint8_t> has_logits_;
    std::vector<llama_token> owed_;        // per sequence: its last token, decoded without logits; -1: none owed
    std::atomic<bool> busy_{false};
    std::atomic<bool> broken_{false};
    std::string broken_why_;               // written before broken_ is set
    bool can_shift_ = false;
    bool force_decode_abort_ = false;      // LLAMAFUSE_TEST_DECODE_ABORT (tests only)
    std::string no_shift_why_;
    const int32_t * abort_flag_ = nullptr; // of the forward in progress
};

} // namespace llamafuse
