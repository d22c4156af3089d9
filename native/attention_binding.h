// JS surface of the fused CPU attention: kernel statistics, a one-node ggml graph for
// kernel-level tests, and the timing pieces of the attention benchmark.
#pragma once

#include <napi.h>

void attention_binding_register(Napi::Env env, Napi::Object exports);
