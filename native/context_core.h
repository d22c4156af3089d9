// What a NativeContext (generation) and a NativeEmbeddingContext share: the llama_context
// parameters read from src/'s resolved options, the making of a llama_context on its own ggml
// thread pool, the create worker's life around it (the model held open, the context handed
// over or freed), the abort callback, and the release on dispose. Each class adds only what
// is its own (context.cpp, embedding.cpp).
#pragma once

#include "attention_switch.h"
#include "common.h"
#include "model.h"

#include "ggml-cpu.h"
#include "llama.h"

namespace llamafuse {

// The parameters every context of ours has, from the resolved options object (contextSize,
// batchSize, sequences, threads): flash attention on (our attention kernels hook FA), one KV
// cache that all sequences share (copies between them are cheap: beam search, forks), no
// performance counters.
llama_context_params context_params_shared(const Napi::Object & o);

// A generation context's (NativeContext.create): the shared ones plus ubatchSize and kvType
// (K and V alike).
llama_context_params context_params_generation(const Napi::Object & o);

// llama.cpp's abort callback for a context whose callback data is the address of its
// `const int32_t * abort_flag_` (the flag of the call in progress, or null): true once set.
bool context_abort_requested(void * abort_flag_slot);

// Frees what a create worker handed over (the llama_context, its batch, its thread pool) and
// tells the model that one context fewer is open. Null handles are skipped, so it may run twice.
// leak: drop the llama_context and its thread pool without calling into llama.cpp (a context
// whose state is unknown after a failed assertion; see NativeContext::free_native).
void context_release(NativeModel * model, llama_context *& ctx, ggml_threadpool *& tp, llama_batch & batch, bool leak = false);

// The create worker's shared part. Holds the model open from construction (it cannot be disposed
// under us), makes the llama_context off the main thread (run), and frees it unless
// hand_over() gave it to the JS-side object. Subclasses add their own parameters to params_
// before the worker is queued, and their own fields in result().
class ContextCreateWorkerBase : public PromiseWorker {
protected:
    // owner: the JS object kept alive during the work; model: the NativeModel object; options:
    // the resolved options (poll, attention, and what `params` was read from); what: the
    // context's name in errors.
    ContextCreateWorkerBase(Napi::Env env, Napi::Object owner, Napi::Object model, const Napi::Object & options,
                            const llama_context_params & params, const char * what);
    ~ContextCreateWorkerBase() override;

    void run() override;

    // Moves the new context into `c` (a NativeContext or NativeEmbeddingContext, which befriend
    // this class): model reference, handles, batch size, sequences, a batch of n_batch tokens,
    // the abort callback over c->abort_flag_, and the attention switch. Main thread (result()).
    template <class C> void hand_over(C * c) {
        c->model_ref_ = Napi::Persistent(model_obj_.Value());
        c->model_ = model_;
        c->ctx_ = ctx_;
        c->threadpool_ = tp_;
        c->n_batch_ = llama_n_batch(ctx_);
        c->n_seq_ = llama_n_seq_max(ctx_);
        c->batch_ = llama_batch_init((int32_t) c->n_batch_, 0, 1);
        llama_set_abort_callback(ctx_, &context_abort_requested, &c->abort_flag_);
        attention_switch_set(tp_, fused_);
        ctx_ = nullptr;
        tp_ = nullptr;
        adopted_ = true;
    }

    Napi::ObjectReference model_obj_;
    NativeModel * model_;
    llama_context_params params_;
    llama_context * ctx_ = nullptr; // made in run(), until hand_over()
    ggml_threadpool * tp_ = nullptr;

private:
    const char * what_;
    uint32_t poll_;
    bool fused_;
    bool adopted_ = false;
};

} // namespace llamafuse
