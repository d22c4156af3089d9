#include "common.h"
#include "llama.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamafuse {

AddonData & addon_data(Napi::Env env) {
    AddonData * d = env.GetInstanceData<AddonData>();
    if (!d) {
        d = new AddonData(env);
        env.SetInstanceData<AddonData>(d); // deleted by node-addon-api when `env` is torn down
    }
    return *d;
}

void AddonData::set_constructor(const std::string & name, Napi::Function fn) {
    constructors[name] = Napi::Persistent(fn);
}

Napi::Object AddonData::construct(const std::string & name) {
    auto it = constructors.find(name);
    if (it == constructors.end()) throw Napi::Error::New(env, "llamafuse: class " + name + " was not registered");
    return it->second.New({});
}

Napi::Error make_error(Napi::Env env, const std::string & code, const std::string & message) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

Napi::Value rejected(Napi::Env env, const std::string & code, const std::string & message) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(make_error(env, code, message).Value());
    return d.Promise();
}

PromiseWorker::PromiseWorker(Napi::Env env, Napi::Object owner)
    : Napi::AsyncWorker(env, "llamafuse"), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!owner.IsEmpty()) owner_ = Napi::Persistent(owner);
}

void PromiseWorker::Execute() {
    try {
        run();
    } catch (const CodedError & e) {
        code_ = e.code;
        SetError(e.what());
    } catch (const std::exception & e) {
        SetError(e.what());
    }
}

void PromiseWorker::OnOK() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
        deferred_.Resolve(result(env));
    } catch (const Napi::Error & e) {
        deferred_.Reject(e.Value());
    } catch (const CodedError & e) {
        deferred_.Reject(make_error(env, e.code, e.what()).Value());
    }
}

void PromiseWorker::OnError(const Napi::Error & e) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    deferred_.Reject(make_error(env, code_, e.Message()).Value());
}

} // namespace llamafuse

void llamafuse::release_freed_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void llamafuse::free_model(llama_model * model) {
    llama_model_free(model);
    release_freed_memory();
}
