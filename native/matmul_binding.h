// Development builds only (LLAMAFUSE_DEV_BINDINGS): one F16 matmul through ggml with the weights
// in the AMX buffer where there is one (tests of patch 0015's kernel).
#pragma once

#include <napi.h>

void matmul_binding_register(Napi::Env env, Napi::Object exports);
