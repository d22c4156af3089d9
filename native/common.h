// Shared pieces of the addon: error codes, the promise-returning worker base, and
// small readers for the resolved option objects that src/ passes in (src/ validates;
// C++ trusts what it reads and applies no policy).
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>
#include <unordered_map>

struct llama_model;

namespace llamafuse {

// ---- per-environment data -------------------------------------------------------------------
// Node can load this addon into several environments at once: the main thread and every
// worker_thread. A JS handle (a constructor, any Napi::Reference) belongs to the environment
// that made it and must never be used from another, so NOTHING that holds a JS value may be
// a process-wide static (a `static Napi::FunctionReference constructor` made the environment
// that loaded the addon last own every class: SIGSEGV or "Entering the V8 API without proper
// locking" as soon as a worker and the main thread both used it). Each environment gets one
// AddonData (napi instance data, freed with the environment). A native class registers its
// constructor in its define() and creates instances through it:
//
//     Napi::Function NativeFoo::define(Napi::Env env) {
//         Napi::Function fn = DefineClass(env, "NativeFoo", {...});
//         addon_data(env).set_constructor("NativeFoo", fn);
//         return fn;
//     }
//     ...
//     Napi::Object obj = addon_data(env).construct("NativeFoo");   // on the main thread of `env`
//
// Process-wide native state (llama.cpp's backend, log routing, the abort guard, the attention
// hooks) is set up once per process in addon.cpp and holds no JS values.
struct AddonData {
    explicit AddonData(Napi::Env env) : env(env) {}
    Napi::Env env;
    std::unordered_map<std::string, Napi::FunctionReference> constructors;

    void set_constructor(const std::string & name, Napi::Function fn);
    // A new instance of a registered class (throws a JS error if `name` was never registered).
    Napi::Object construct(const std::string & name);
};

// This environment's AddonData, created on first use.
AddonData & addon_data(Napi::Env env);

// Hands memory that free() kept in the allocator's arenas back to the system (glibc; a no-op
// elsewhere). A model's weight buffers under glibc's mmap threshold (it rises to 32 MB once a
// larger block was freed) come from the arenas of whichever worker thread loaded them and stay
// there after free: disposed models and aborted loads kept up to ~90 MB resident.
void release_freed_memory();

// llama_model_free, then release_freed_memory
void free_model(llama_model * model);

// An error that crosses to JS as {message, code}; src/errors.ts wraps it in LlamaError.
struct CodedError : std::runtime_error {
    std::string code;
    CodedError(std::string code_, const std::string & message) : std::runtime_error(message), code(std::move(code_)) {}
};

Napi::Error make_error(Napi::Env env, const std::string & code, const std::string & message);

// The one shape for slow calls: copy inputs on the main thread (constructor), do the work
// off it (Execute, never touching JS), resolve or reject a promise on the main thread.
// The owner object is Ref()'d for the worker's lifetime so it cannot be collected mid-call.
class PromiseWorker : public Napi::AsyncWorker {
public:
    // owner: the JS object whose native memory the work uses (a model, a context); held
    // strongly until the worker is destroyed so the GC cannot free it mid-call.
    explicit PromiseWorker(Napi::Env env, Napi::Object owner = Napi::Object());
    Napi::Promise promise() { return deferred_.Promise(); }
    // Queue the worker and return its promise (the worker deletes itself when done).
    Napi::Promise start() {
        Napi::Promise p = deferred_.Promise();
        Queue();
        return p;
    }

protected:
    // Run the work; throw CodedError (or any std::exception) to reject.
    virtual void run() = 0;
    // Build the resolved value on the main thread.
    virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }

private:
    void Execute() final;
    void OnOK() final;
    void OnError(const Napi::Error & e) final;

    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference owner_;
    std::string code_ = "ERR_NATIVE";
    std::string message_;
};

// Readers for resolved options (present and well-typed: src/ guarantees it).
inline int32_t get_i32(const Napi::Object & o, const char * k) { return o.Get(k).As<Napi::Number>().Int32Value(); }
inline uint32_t get_u32(const Napi::Object & o, const char * k) { return o.Get(k).As<Napi::Number>().Uint32Value(); }
inline double get_f64(const Napi::Object & o, const char * k) { return o.Get(k).As<Napi::Number>().DoubleValue(); }
inline bool get_bool(const Napi::Object & o, const char * k) { return o.Get(k).As<Napi::Boolean>().Value(); }
inline std::string get_str(const Napi::Object & o, const char * k) { return o.Get(k).As<Napi::String>().Utf8Value(); }

// Rejected promise for argument-level failures detected synchronously in a method.
Napi::Value rejected(Napi::Env env, const std::string & code, const std::string & message);

} // namespace llamafuse
