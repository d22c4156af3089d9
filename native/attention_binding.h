// JS surface of the fused CPU attention.
#pragma once

#include <napi.h>

// Every build: kernelStats(), kernelStatsReset(), attentionKernelInfo().
void attention_stats_register(Napi::Env env, Napi::Object exports);

// Development builds only (LLAMAFUSE_DEV_BINDINGS): a one-node ggml graph for kernel-level tests
// (synchronous), timing sessions over large random caches and a read-bandwidth probe.
void attention_binding_register(Napi::Env env, Napi::Object exports);
