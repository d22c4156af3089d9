// Module init: registers the native classes and installs llamafuse's process-wide hooks
// (log routing, abort guard, attention and matmul kernels). Nothing else lives here.
#include "abort_guard.h"
#include "attention_switch.h"
#include "chat_templates.h"
#include "context.h"
#include "embedding.h"
#include "kernels/cpu/matmul_hook.h"
#include "fit.h"
#include "log.h"
#include "model.h"
#include "rpc.h"
#include "scheduler.h"
#include "sampling.h"

#include "llama.h"

#include "attention_binding.h"
#include "matmul_binding.h"

#include <mutex>

using namespace llamafuse;

static Napi::Value SystemInfo(const Napi::CallbackInfo & info) {
    return Napi::String::New(info.Env(), llama_print_system_info());
}

// Init runs once per environment (the main thread and each worker_thread that loads the addon).
// The process-wide native setup happens once; everything that holds JS values is per environment
// (AddonData in common.h).
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    static std::once_flag process_init;
    std::call_once(process_init, [] {
        llama_backend_init();
        log_install();
        abort_guard_install();
        attention_switch_install();
        cpu::matmul_hook_install();
        chat_log_install();
    });
    exports.Set("NativeModel", NativeModel::define(env));
    exports.Set("NativeContext", NativeContext::define(env));
    exports.Set("NativeEmbeddingContext", NativeEmbeddingContext::define(env));
    exports.Set("NativeSampler", NativeSampler::define(env));
    exports.Set("NativeChatTemplates", NativeChatTemplates::define(env));
    exports.Set("jsonSchemaToGrammar", Napi::Function::New(env, json_schema_to_gbnf));
    exports.Set("chatBuiltinTemplates", Napi::Function::New(env, chat_builtin_templates));
    exports.Set("NativeScheduler", NativeScheduler::define(env));
    exports.Set("systemInfo", Napi::Function::New(env, SystemInfo));
    exports.Set("supportsMmap", Napi::Boolean::New(env, llama_supports_mmap()));
    exports.Set("supportsGpuOffload", Napi::Boolean::New(env, llama_supports_gpu_offload()));
    exports.Set("hasFusedAttention", Napi::Boolean::New(env, true));
    attention_stats_register(env, exports);
    rpc_register(env, exports);
    fit_register(env, exports);
#if LLAMAFUSE_DEV_BINDINGS
    attention_binding_register(env, exports);
    matmul_binding_register(env, exports);
#endif
    exports.Set("devBindings", Napi::Boolean::New(env, LLAMAFUSE_DEV_BINDINGS != 0));
    return exports;
}

NODE_API_MODULE(llamafuse, Init)
