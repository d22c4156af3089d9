// llama.cpp's RPC backend, from the pinned tree (GGML_RPC): nothing of our own on the wire.
// A server serves this machine's CPU backend; a model load given rpcServers offloads its
// layers to those servers' devices (src/model.ts checks that each one answers first: the
// backend aborts the process when it cannot connect).
#include "rpc.h"

#include "common.h"

#if LLAMAFUSE_RPC
#include "ggml-rpc.h"
#endif

#include <thread>

namespace llamafuse {

#if LLAMAFUSE_RPC

std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints) {
    std::vector<ggml_backend_dev_t> out;
    for (const auto & e : endpoints) {
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(e.c_str());
        if (!reg) throw CodedError("ERR_INVALID_OPTION", "the RPC server at " + e + " offers no devices");
        for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) out.push_back(ggml_backend_reg_dev_get(reg, i));
    }
    return out;
}

// rpcStartServer(endpoint, threads): ggml's server loop (accept, serve one client until it
// leaves, repeat) on a thread of its own, for the life of the process: ggml has no way to
// stop it. A bind failure ends the thread with a message on stderr; the caller checks that
// the port answers.
static Napi::Value rpc_start_server(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    std::string endpoint = info[0].As<Napi::String>().Utf8Value();
    size_t threads = info[1].As<Napi::Number>().Uint32Value();
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) throw make_error(env, "ERR_UNSUPPORTED", "no CPU backend to serve");
    std::thread([endpoint, threads, cpu]() {
        ggml_backend_dev_t devices[1] = { cpu };
        ggml_backend_rpc_start_server(endpoint.c_str(), nullptr, threads, 1, devices);
    }).detach();
    return env.Undefined();
}

#else

std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> &) {
    throw CodedError("ERR_UNSUPPORTED", "this build has no RPC backend (GGML_RPC)");
}

static Napi::Value rpc_start_server(const Napi::CallbackInfo & info) {
    throw make_error(info.Env(), "ERR_UNSUPPORTED", "this build has no RPC backend (GGML_RPC)");
}

#endif

void rpc_register(Napi::Env env, Napi::Object exports) {
    exports.Set("rpcStartServer", Napi::Function::New(env, rpc_start_server));
    exports.Set("hasRpc", Napi::Boolean::New(env, LLAMAFUSE_RPC != 0));
}

} // namespace llamafuse
