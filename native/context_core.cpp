#include "context_core.h"

#include "abort_guard.h"
#include "log.h"

#include <string>

namespace llamafuse {

llama_context_params context_params_shared(const Napi::Object & o) {
    llama_context_params p = llama_context_default_params();
    p.n_ctx = get_u32(o, "contextSize");
    p.n_batch = get_u32(o, "batchSize");
    p.n_seq_max = get_u32(o, "sequences");
    p.n_threads = get_i32(o, "threads");
    p.n_threads_batch = p.n_threads;
    p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    p.kv_unified = true;
    p.no_perf = true;
    return p;
}

llama_context_params context_params_generation(const Napi::Object & o) {
    llama_context_params p = context_params_shared(o);
    p.n_ubatch = get_u32(o, "ubatchSize");
    p.type_k = (ggml_type) get_i32(o, "kvType");
    p.type_v = p.type_k;
    return p;
}

// A llama_context on its own ggml thread pool (`threads`, spinning at `poll`), created under
// the abort guard. ctx and tp are set as soon as each exists, so the caller frees what was made
// when this throws (CodedError: ERR_NATIVE, ERR_INVALID_OPTION, ERR_CONTEXT_CREATE naming `what`).
static void context_init(llama_model * model, const llama_context_params & params, int32_t threads, uint32_t poll,
                         const char * what, llama_context *& ctx, ggml_threadpool *& tp) {
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    tpp.poll = poll;
    tp = ggml_threadpool_new(&tpp);
    if (!tp) throw CodedError("ERR_NATIVE", "could not create a thread pool");
    log_clear_error();
    AbortGuard guard;
    try {
        ctx = llama_init_from_model(model, params);
    } catch (const GgmlAbort & e) {
        throw CodedError("ERR_INVALID_OPTION", std::string("llama.cpp rejected the context parameters: ") + e.what());
    }
    if (!ctx) {
        std::string why = log_last_error();
        throw CodedError("ERR_CONTEXT_CREATE", std::string("failed to create the ") + what + (why.empty() ? std::string() : ": " + why));
    }
    llama_attach_threadpool(ctx, tp, tp);
}

bool context_abort_requested(void * abort_flag_slot) {
    const int32_t * flag = *static_cast<const int32_t * const *>(abort_flag_slot);
    return flag && __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0;
}

void context_release(NativeModel * model, llama_context *& ctx, ggml_threadpool *& tp, llama_batch & batch, bool leak) {
    if (ctx) {
        if (leak) tp = nullptr;
        else llama_free(ctx);
        ctx = nullptr;
        llama_batch_free(batch);
        batch = {};
        if (model) model->context_closed();
    }
    if (tp) {
        attention_switch_forget(tp);
        ggml_threadpool_free(tp);
        tp = nullptr;
    }
}

ContextCreateWorkerBase::ContextCreateWorkerBase(Napi::Env env, Napi::Object owner, Napi::Object model, const Napi::Object & options,
                                                 const llama_context_params & params, const char * what)
    : PromiseWorker(env, owner), model_obj_(Napi::Persistent(model)), model_(NativeModel::Unwrap(model)), params_(params),
      what_(what), poll_(get_u32(options, "poll")), fused_(get_str(options, "attention") == "fused") {
    model_->context_opened(); // held from now: the model cannot be disposed under us
}

ContextCreateWorkerBase::~ContextCreateWorkerBase() {
    if (ctx_) llama_free(ctx_);
    if (tp_) ggml_threadpool_free(tp_);
    if (!adopted_) model_->context_closed();
}

void ContextCreateWorkerBase::run() {
    if (!model_->model()) throw CodedError("ERR_DISPOSED", "the model is disposed");
    context_init(model_->model(), params_, params_.n_threads, poll_, what_, ctx_, tp_);
}

} // namespace llamafuse
