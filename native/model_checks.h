// Checks, before llama.cpp loads a model, that its tensors and hyperparameters are ones
// llama.cpp's graphs accept. llama.cpp's loader checks names, shapes and byte sizes, but a
// weight retyped to a same-size type (F32 -> I32, F16 -> I16, a norm F32 -> F16) or an
// epsilon of -1 or NaN loads fine and then aborts (or crashes) at the first forward, on ggml's
// compute threads, where no abort guard can turn it into an error. Every failed check is a
// CodedError ERR_INVALID_MODEL naming the tensor or key.
#pragma once

#include "gguf_metadata.h"

namespace llamafuse {

// Tensor types: no integer-typed weights; norm weights and biases F32 (ggml's binary ops take an
// F32 activation with an F32 operand only). Skipped for vocabulary-only loads.
void model_check_tensors(const GgufMetadata & meta);

// Hyperparameters the graph asserts on or divides by: every float under "<arch>." finite,
// epsilons >= 0, head counts that divide, a rope dimension count that is even and fits the head.
void model_check_hparams(const GgufMetadata & meta);

// The tokenizer: a vocabulary type other than "none" needs a non-empty token list.
void model_check_vocab(const GgufMetadata & meta);

} // namespace llamafuse
