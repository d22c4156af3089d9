// See tokenize.h. Also NativeModel's synchronous tokenizeSync / detokenizeSync: a one-sentence
// tokenize is a few microseconds of work, less than the thread hop of an AsyncWorker.
#include "tokenize.h"

#include "abort_guard.h"
#include "common.h"
#include "model.h"

#include <climits>
#include <stdexcept>

namespace llamafuse {

static std::vector<llama_token> tokenize_unguarded(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special) {
    std::vector<llama_token> tokens(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), add_special, parse_special);
    if (n < 0) {
        if (n == INT32_MIN) throw CodedError("ERR_INVALID_OPTION", "tokenization overflowed int32");
        tokens.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(), (int32_t) tokens.size(), add_special, parse_special);
    }
    if (n < 0) throw CodedError("ERR_NATIVE", "llama_tokenize failed");
    tokens.resize(n);
    return tokens;
}

std::vector<llama_token> tokenize_text(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special) {
    if (text.size() > (size_t) INT32_MAX / 2) throw CodedError("ERR_INVALID_OPTION", "text is too long to tokenize");
    // llama.cpp's tokenizers GGML_ASSERT on odd vocabularies (the guard makes that an
    // exception: no locks are held and only this call's own containers unwind), and an SPM
    // vocabulary without byte fallback throws std::out_of_range ("unordered_map::at") for a
    // character it has no token for.
    AbortGuard guard;
    try {
        return tokenize_unguarded(vocab, text, add_special, parse_special);
    } catch (const GgmlAbort & e) {
        throw CodedError("ERR_INVALID_MODEL", std::string("llama.cpp's tokenizer failed on this model's vocabulary: ") + e.what());
    } catch (const std::out_of_range &) {
        throw CodedError("ERR_UNSUPPORTED", "this model's vocabulary cannot encode the text: it has no token (and no byte fallback) for some of its characters");
    }
}

static std::string detokenize_unguarded(const llama_vocab * vocab, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
    std::string text(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab, tokens.data(), (int32_t) tokens.size(), text.data(), (int32_t) text.size(), remove_special, unparse_special);
    if (n < 0) {
        text.resize(-n);
        n = llama_detokenize(vocab, tokens.data(), (int32_t) tokens.size(), text.data(), (int32_t) text.size(), remove_special, unparse_special);
    }
    if (n < 0) throw CodedError("ERR_NATIVE", "llama_detokenize failed");
    text.resize(n);
    return text;
}

std::string detokenize_tokens(const llama_vocab * vocab, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
    AbortGuard guard; // as in tokenize_text
    try {
        return detokenize_unguarded(vocab, tokens, remove_special, unparse_special);
    } catch (const GgmlAbort & e) {
        throw CodedError("ERR_INVALID_MODEL", std::string("llama.cpp's detokenizer failed on this model's vocabulary: ") + e.what());
    }
}

// ---- NativeModel's synchronous calls ----------------------------------------------------------

static const char * kNoTokenizerSync = "this model has no tokenizer (its tokenizer.ggml.model is \"none\" or its vocabulary is empty)";

// tokenizeSync(text, { addSpecial, parseSpecial }) -> Int32Array; text of at most
// kSyncTokenizeMaxBytes UTF-8 bytes (src/model.ts checks first and says so).
Napi::Value NativeModel::TokenizeSync(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (disposed()) throw make_error(env, "ERR_DISPOSED", "the model is disposed");
    if (!has_tokenizer()) throw make_error(env, "ERR_UNSUPPORTED", kNoTokenizerSync);
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    if (text.size() > kSyncTokenizeMaxBytes) {
        throw make_error(env, "ERR_INVALID_OPTION", "tokenizeSync takes texts of at most " + std::to_string(kSyncTokenizeMaxBytes) + " UTF-8 bytes; use tokenize()");
    }
    Napi::Object o = info[1].As<Napi::Object>();
    std::vector<llama_token> tokens;
    try {
        tokens = tokenize_text(vocab(), text, get_bool(o, "addSpecial"), get_bool(o, "parseSpecial"));
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    }
    Napi::Int32Array out = Napi::Int32Array::New(env, tokens.size());
    std::copy(tokens.begin(), tokens.end(), out.Data());
    return out;
}

// detokenizeSync(tokens: Int32Array, { removeSpecial, unparseSpecial }) -> string; at most
// kSyncDetokenizeMaxTokens tokens. A string, not bytes: V8 decodes the UTF-8 (an incomplete
// character at the end becomes U+FFFD, as TextDecoder makes it), and no Buffer is allocated.
Napi::Value NativeModel::DetokenizeSync(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (disposed()) throw make_error(env, "ERR_DISPOSED", "the model is disposed");
    if (!has_tokenizer()) throw make_error(env, "ERR_UNSUPPORTED", kNoTokenizerSync);
    Napi::Int32Array a = info[0].As<Napi::Int32Array>();
    if (a.ElementLength() > kSyncDetokenizeMaxTokens) {
        throw make_error(env, "ERR_INVALID_OPTION", "detokenizeSync takes at most " + std::to_string(kSyncDetokenizeMaxTokens) + " tokens; use detokenize()");
    }
    const std::vector<llama_token> tokens(a.Data(), a.Data() + a.ElementLength());
    Napi::Object o = info[1].As<Napi::Object>();
    std::string text;
    try {
        text = detokenize_tokens(vocab(), tokens, get_bool(o, "removeSpecial"), get_bool(o, "unparseSpecial"));
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    }
    return Napi::String::New(env, text.data(), text.size());
}

} // namespace llamafuse
