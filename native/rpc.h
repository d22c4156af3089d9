// llama.cpp's RPC backend (GGML_RPC): serve this machine's CPU backend to other processes,
// and reach remote servers' devices when loading a model.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "ggml-backend.h"

namespace llamafuse {

// The devices of these RPC servers ("host:port"), for llama_model_params.devices. Throws
// CodedError (ERR_UNSUPPORTED when this build has no RPC backend). Connects to each server.
std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints);

// exports.rpcStartServer(endpoint, threads) and exports.hasRpc.
void rpc_register(Napi::Env env, Napi::Object exports);

} // namespace llamafuse
