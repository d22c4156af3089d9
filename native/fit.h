// Memory estimates and fitting to free device memory, through llama.cpp's common/fit
// (linked in llamafuse_common): model.estimateMemory() and loadModel({ gpuLayers: "auto" }).
#pragma once

#include <napi.h>

namespace llamafuse {

// Adds estimateMemory(path, modelOptions, contextOptions), fitParams(path, contextOptions,
// fitOptions) and contextMemory(nativeContext) and gpuDevices() to the exports (see src/fit.ts).
void fit_register(Napi::Env env, Napi::Object exports);

} // namespace llamafuse
