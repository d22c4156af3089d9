// NativeEmbeddingContext: a llama_context with embeddings on and one pooling type, for
// sentence vectors (pooled), per-token vectors (pooling none) and reranker scores (pooling
// rank). embed() takes many texts at once and packs them across sequences, one sequence per
// text, up to n_batch tokens per llama_decode; the memory is cleared after each decode, so a
// text's vector never depends on what it was batched with. Runs on a worker and is abortable
// between decodes and inside one (llama.cpp's abort callback). src/embed/ validates inputs.
#pragma once

#include "common.h"
#include "context_core.h"
#include "model.h"

#include "ggml-cpu.h"
#include "llama.h"

#include <atomic>
#include <vector>

namespace llamafuse {

class NativeEmbeddingContext : public Napi::ObjectWrap<NativeEmbeddingContext> {
public:
    static Napi::Function define(Napi::Env env);
    NativeEmbeddingContext(const Napi::CallbackInfo & info);
    ~NativeEmbeddingContext() override;

    // ---- used by the embed worker (off the main thread, while busy_ is held) ----
    // tokens: all texts back to back; offsets: n+1 starts. Writes each text's output to out:
    // `dim` floats per text (pooled, rank), or per token (pooling none). Throws CodedError.
    void embed(const std::vector<llama_token> & tokens, const std::vector<uint32_t> & offsets, float * out,
               const int32_t * abort_flag);
    size_t out_floats(const std::vector<uint32_t> & offsets) const;

    bool try_acquire() {
        bool expected = false;
        return busy_.compare_exchange_strong(expected, true);
    }
    void release() { busy_.store(false); }

private:
    Napi::Value Init(const Napi::CallbackInfo & info);
    Napi::Value Embed(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    void free_native();
    void clear_memory();

    friend class EmbeddingCreateWorker;
    friend class ContextCreateWorkerBase;

    Napi::ObjectReference model_ref_;
    NativeModel * model_ = nullptr;
    llama_context * ctx_ = nullptr;
    ggml_threadpool * threadpool_ = nullptr;
    llama_batch batch_{};
    enum llama_pooling_type pooling_ = LLAMA_POOLING_TYPE_NONE;
    uint32_t n_batch_ = 0, n_seq_ = 0;
    int32_t dim_ = 0; // floats per output row: n_embd_out, or n_cls_out for rank
    std::atomic<bool> busy_{false};
    bool initialized_ = false; // init() may run once
    const int32_t * abort_flag_ = nullptr; // of the embed in progress
};

} // namespace llamafuse
