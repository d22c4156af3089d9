// Development builds only (LLAMAFUSE_DEV_BINDINGS): one matmul through ggml with the weights in
// the buffer a model load uses (tests of patch 0015's AMX-BF16 kernel and of kernels/cpu/matmul_q4_0).
#pragma once

#include <napi.h>

void matmul_binding_register(Napi::Env env, Napi::Object exports);
