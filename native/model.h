// NativeModel: a loaded llama_model. Load runs on a worker; tokenize and detokenize too
// (long texts take milliseconds). Metadata is read once at load, from the GGUF itself, so
// arrays (token lists, scores) come through whole rather than as llama.cpp's summaries.
#pragma once

#include "common.h"
#include "gguf_metadata.h"

#include "llama.h"

#include <atomic>
#include <memory>

namespace llamafuse {

// A GGUF file's metadata, read without llama.cpp and checked for what its loader would crash
// on (model_checks.h): the vocabulary always, tensors and hyperparameters unless vocab_only.
// The first step of a load, and of a memory estimate or fit (native/fit.cpp). Throws
// CodedError: ERR_INVALID_MODEL for a file that is not a readable GGUF, else the checks' codes.
GgufMetadata model_metadata_checked(const std::string & path, bool vocab_only);

class NativeModel : public Napi::ObjectWrap<NativeModel> {
public:
    static Napi::Function define(Napi::Env env);
    NativeModel(const Napi::CallbackInfo & info);
    ~NativeModel() override;

    llama_model * model() const { return model_; }
    const llama_vocab * vocab() const { return vocab_; }
    bool disposed() const { return model_ == nullptr; }
    // False for a vocabulary of type "none" or with no tokens: llama.cpp's tokenizer, piece
    // lookups, grammar and DRY samplers all GGML_ASSERT on one.
    bool has_tokenizer() const { return has_tokenizer_; }
    // K head size (key_length, or embedding / heads); 0 when unknown (vocab-only, no attention).
    int32_t head_dim_k() const { return head_dim_k_; }
    void set_head_dim_k(int32_t d) { head_dim_k_ = d; }
    // A share of the llama_model for work that can outlive its caller (a grammar build left
    // running after an abort, native/sampling.cpp): dispose() and the GC drop the model's own
    // share, and the model is freed when the last share goes. Empty once disposed.
    std::shared_ptr<llama_model> share() const { return owner_; }
    void context_opened() { ++contexts_; }
    void context_closed() { --contexts_; }

    // A rejected promise (disposed, or no tokenizer), or empty when tokenizing is possible.
    Napi::Value check_tokenizer(Napi::Env env);

    // Called by the load worker on the main thread.
    void adopt(llama_model * model);

private:
    static Napi::Value Load(const Napi::CallbackInfo & info);
    Napi::Value Tokenize(const Napi::CallbackInfo & info);
    Napi::Value Detokenize(const Napi::CallbackInfo & info);
    // Short inputs on the calling thread (native/tokenize.cpp): no worker hop.
    Napi::Value TokenizeSync(const Napi::CallbackInfo & info);
    Napi::Value DetokenizeSync(const Napi::CallbackInfo & info);
    Napi::Value TokenPieces(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    llama_model * model_ = nullptr;
    std::shared_ptr<llama_model> owner_; // frees model_ (llama_model_free) with the last share
    const llama_vocab * vocab_ = nullptr;
    int contexts_ = 0;
    bool has_tokenizer_ = false;
    int32_t head_dim_k_ = 0;
};

} // namespace llamafuse
