#include "model.h"

#include "abort_guard.h"
#include "gguf_metadata.h"
#include "log.h"
#include "model_checks.h"
#include "rpc.h"
#include "tokenize.h"

#include <memory>
#include <string>
#include <vector>

namespace llamafuse {

GgufMetadata model_metadata_checked(const std::string & path, bool vocab_only) {
    GgufMetadata meta;
    try {
        meta = gguf_metadata_read(path);
    } catch (const std::exception & e) {
        throw CodedError("ERR_INVALID_MODEL", std::string("invalid GGUF file ") + path + ": " + e.what());
    }
    model_check_vocab(meta);
    if (!vocab_only) {
        model_check_tensors(meta);
        model_check_hparams(meta);
    }
    return meta;
}

Napi::Function NativeModel::define(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeModel", {
        StaticMethod("load", &NativeModel::Load),
        InstanceMethod("tokenize", &NativeModel::Tokenize),
        InstanceMethod("detokenize", &NativeModel::Detokenize),
        InstanceMethod("tokenizeSync", &NativeModel::TokenizeSync),
        InstanceMethod("detokenizeSync", &NativeModel::DetokenizeSync),
        InstanceMethod("tokenPieces", &NativeModel::TokenPieces),
        InstanceMethod("dispose", &NativeModel::Dispose),
    });
    addon_data(env).set_constructor("NativeModel", fn);
    return fn;
}

NativeModel::NativeModel(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeModel>(info) {}

NativeModel::~NativeModel() {
    // Fallback for a model that was never disposed: the GC frees it (or the last share does).
    // Contexts hold a reference to their model, so none can be alive here.
    owner_.reset();
}

void NativeModel::adopt(llama_model * model) {
    owner_.reset(model, free_model);
    model_ = model;
    vocab_ = llama_model_get_vocab(model);
    has_tokenizer_ = llama_vocab_type(vocab_) != LLAMA_VOCAB_TYPE_NONE && llama_vocab_n_tokens(vocab_) > 0;
}

static const char * kNoTokenizer = "this model has no tokenizer (its tokenizer.ggml.model is \"none\" or its vocabulary is empty)";

Napi::Value NativeModel::check_tokenizer(Napi::Env env) {
    if (disposed()) return rejected(env, "ERR_DISPOSED", "the model is disposed");
    if (!has_tokenizer_) return rejected(env, "ERR_UNSUPPORTED", kNoTokenizer);
    return Napi::Value();
}

// ---- load ----------------------------------------------------------------------------------

// The fields of model.info that llama.cpp computes (the rest comes from the GGUF metadata).
struct ModelFacts {
    std::string architecture, name, description, vocab_type, chat_template;
    uint64_t parameters = 0, size_bytes = 0;
    int32_t layers = 0, embedding = 0, heads = 0, heads_kv = 0, train_ctx = 0, vocab_size = 0, head_dim_k = 0;
    int32_t bos = -1, eos = -1, eot = -1, nl = -1, pad = -1;
    bool add_bos = false, add_eos = false, has_encoder = false, is_recurrent = false;
};

static const char * vocab_type_name(enum llama_vocab_type t) {
    switch (t) {
        case LLAMA_VOCAB_TYPE_NONE: return "none";
        case LLAMA_VOCAB_TYPE_SPM: return "spm";
        case LLAMA_VOCAB_TYPE_BPE: return "bpe";
        case LLAMA_VOCAB_TYPE_WPM: return "wpm";
        case LLAMA_VOCAB_TYPE_UGM: return "ugm";
        case LLAMA_VOCAB_TYPE_RWKV: return "rwkv";
        default: return "other";
    }
}

static std::string meta_str(const llama_model * m, const char * key) {
    char buf[512];
    int n = llama_model_meta_val_str(m, key, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, std::min<size_t>(n, sizeof buf - 1));
}

class ModelLoadWorker : public PromiseWorker {
public:
    ModelLoadWorker(const Napi::CallbackInfo & info) : PromiseWorker(info.Env()) {
        Napi::Object o = info[1].As<Napi::Object>();
        path_ = info[0].As<Napi::String>().Utf8Value();
        params_ = llama_model_default_params();
        params_.n_gpu_layers = get_i32(o, "gpuLayers");
        use_mmap_ = get_bool(o, "useMmap");
        use_mlock_ = get_bool(o, "useMlock");
        params_.vocab_only = get_bool(o, "vocabOnly");
        // RPC servers ("host:port", each checked to answer by src/model.ts): layers go to their devices.
        Napi::Value rpc = o.Get("rpcServers");
        if (rpc.IsArray()) {
            Napi::Array a = rpc.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); i++) rpc_servers_.push_back(a.Get(i).As<Napi::String>().Utf8Value());
        }
        // Abort flag: an Int32Array over a buffer shared with JS; JS stores 1 to abort.
        Napi::Int32Array flag = o.Get("abortFlag").As<Napi::Int32Array>();
        abort_flag_ = flag.Data();
        abort_ref_ = Napi::Persistent(flag.As<Napi::Object>());
        Napi::Value cb = o.Get("onProgress");
        if (cb.IsFunction()) {
            progress_ = Napi::ThreadSafeFunction::New(info.Env(), cb.As<Napi::Function>(), "llamafuse.progress", 0, 1);
            has_progress_ = true;
        }
    }
    ~ModelLoadWorker() override {
        if (model_) free_model(model_); // rejected or not adopted
        if (has_progress_) progress_.Release();
    }

protected:
    void run() override {
        params_.progress_callback = &ModelLoadWorker::on_progress;
        params_.progress_callback_user_data = this;
        set_mmap_mlock();
        // Our own checks first, on the metadata alone: what llama.cpp would load and then
        // crash on (model_checks.h) is refused before it reads anything.
        log_clear_error();
        AbortGuard guard;
        metadata_ = model_metadata_checked(path_, params_.vocab_only);
        if (!rpc_servers_.empty()) {
            // The servers' devices, then this machine's GPUs (llama.cpp's own order for --rpc).
            devices_ = rpc_devices(rpc_servers_);
            for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
                ggml_backend_dev_t d = ggml_backend_dev_get(i);
                if (ggml_backend_dev_type(d) == GGML_BACKEND_DEVICE_TYPE_GPU) devices_.push_back(d);
            }
            devices_.push_back(nullptr);
            params_.devices = devices_.data();
        }
        try {
            model_ = llama_model_load_from_file(path_.c_str(), params_);
        } catch (const GgmlAbort & e) {
            throw CodedError("ERR_INVALID_MODEL", std::string("invalid model file: ") + e.what());
        }
        if (!model_) {
            release_freed_memory(); // what llama.cpp allocated before it gave up
            if (__atomic_load_n(abort_flag_, __ATOMIC_ACQUIRE)) throw CodedError("ERR_ABORTED", "model loading was aborted");
            std::string why = AbortGuard::last_message();
            if (why.empty()) why = log_last_error();
            throw CodedError("ERR_INVALID_MODEL", "failed to load model " + path_ + (why.empty() ? "" : ": " + why));
        }
        if (__atomic_load_n(abort_flag_, __ATOMIC_ACQUIRE)) throw CodedError("ERR_ABORTED", "model loading was aborted");
        try {
            collect_facts();
        } catch (const GgmlAbort & e) {
            throw CodedError("ERR_INVALID_MODEL", std::string("invalid model: ") + e.what());
        }
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object obj = addon_data(env).construct("NativeModel");
        NativeModel::Unwrap(obj)->adopt(model_);
        NativeModel::Unwrap(obj)->set_head_dim_k(facts_.head_dim_k);
        model_ = nullptr;
        Napi::Object info = Napi::Object::New(env);
        info.Set("architecture", facts_.architecture);
        info.Set("name", facts_.name);
        info.Set("description", facts_.description);
        info.Set("parameters", (double) facts_.parameters);
        info.Set("sizeBytes", (double) facts_.size_bytes);
        info.Set("layers", facts_.layers);
        info.Set("embeddingSize", facts_.embedding);
        info.Set("heads", facts_.heads);
        info.Set("headsKv", facts_.heads_kv);
        info.Set("trainContextSize", facts_.train_ctx);
        info.Set("vocabSize", facts_.vocab_size);
        info.Set("vocabType", facts_.vocab_type);
        info.Set("bos", facts_.bos);
        info.Set("eos", facts_.eos);
        info.Set("eot", facts_.eot);
        info.Set("nl", facts_.nl);
        info.Set("pad", facts_.pad);
        info.Set("addBos", facts_.add_bos);
        info.Set("addEos", facts_.add_eos);
        info.Set("hasEncoder", facts_.has_encoder);
        info.Set("isRecurrent", facts_.is_recurrent);
        info.Set("chatTemplate", facts_.chat_template.empty() ? env.Null() : Napi::String::New(env, facts_.chat_template));
        info.Set("metadata", gguf_metadata_to_js(env, metadata_));
        Napi::Object out = Napi::Object::New(env);
        out.Set("model", obj);
        out.Set("info", info);
        return out;
    }

private:
    void set_mmap_mlock() {
        // This llama.cpp expresses mmap/mlock through load_mode.
        if (use_mmap_) params_.load_mode = use_mlock_ ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP;
        else params_.load_mode = use_mlock_ ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE;
    }

    static bool on_progress(float p, void * user) {
        auto * self = static_cast<ModelLoadWorker *>(user);
        if (self->has_progress_) {
            auto * value = new float(p);
            if (self->progress_.NonBlockingCall(value, [](Napi::Env env, Napi::Function fn, float * v) {
                    double p = *v;
                    delete v;
                    fn.Call({Napi::Number::New(env, p)});
                }) != napi_ok) {
                delete value;
            }
        }
        return __atomic_load_n(self->abort_flag_, __ATOMIC_ACQUIRE) == 0;
    }

    void collect_facts() {
        const llama_vocab * vocab = llama_model_get_vocab(model_);
        facts_.architecture = meta_str(model_, "general.architecture");
        facts_.name = meta_str(model_, "general.name");
        char desc[256];
        llama_model_desc(model_, desc, sizeof desc);
        facts_.description = desc;
        facts_.parameters = llama_model_n_params(model_);
        facts_.size_bytes = llama_model_size(model_);
        facts_.layers = llama_model_n_layer(model_);
        facts_.embedding = llama_model_n_embd(model_);
        // Per-layer counts: a vocab-only model has no layers, and llama.cpp aborts on
        // asking layer 0 of one.
        if (facts_.layers > 0) {
            facts_.heads = llama_model_n_head(model_);
            facts_.heads_kv = llama_model_n_head_kv(model_);
            double key_length = 0;
            if (metadata_.number(facts_.architecture + ".attention.key_length", key_length)) facts_.head_dim_k = (int32_t) key_length;
            else if (facts_.heads > 0) facts_.head_dim_k = facts_.embedding / facts_.heads;
        }
        facts_.train_ctx = llama_model_n_ctx_train(model_);
        facts_.vocab_size = llama_vocab_n_tokens(vocab);
        facts_.vocab_type = vocab_type_name(llama_vocab_type(vocab));
        facts_.bos = llama_vocab_bos(vocab);
        facts_.eos = llama_vocab_eos(vocab);
        facts_.eot = llama_vocab_eot(vocab);
        facts_.nl = llama_vocab_nl(vocab);
        facts_.pad = llama_vocab_pad(vocab);
        facts_.add_bos = llama_vocab_get_add_bos(vocab);
        facts_.add_eos = llama_vocab_get_add_eos(vocab);
        facts_.has_encoder = llama_model_has_encoder(model_);
        facts_.is_recurrent = llama_model_is_recurrent(model_) || llama_model_is_hybrid(model_);
        const char * tmpl = llama_model_chat_template(model_, nullptr);
        if (tmpl) facts_.chat_template = tmpl;
    }

    std::string path_;
    llama_model_params params_;
    std::vector<std::string> rpc_servers_;
    std::vector<ggml_backend_dev_t> devices_;
    bool use_mmap_ = true, use_mlock_ = false;
    int32_t * abort_flag_ = nullptr;
    Napi::ObjectReference abort_ref_;
    Napi::ThreadSafeFunction progress_;
    bool has_progress_ = false;
    llama_model * model_ = nullptr;
    GgufMetadata metadata_;
    ModelFacts facts_;
};

Napi::Value NativeModel::Load(const Napi::CallbackInfo & info) {
    return (new ModelLoadWorker(info))->start();
}

// ---- tokenize / detokenize -------------------------------------------------------------------

class TokenizeWorker : public PromiseWorker {
public:
    TokenizeWorker(const Napi::CallbackInfo & info, NativeModel * m)
        : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), vocab_(m->vocab()) {
        text_ = info[0].As<Napi::String>().Utf8Value();
        Napi::Object o = info[1].As<Napi::Object>();
        add_special_ = get_bool(o, "addSpecial");
        parse_special_ = get_bool(o, "parseSpecial");
    }

protected:
    void run() override {
        tokens_ = tokenize_text(vocab_, text_, add_special_, parse_special_); // tokenize.cpp
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Int32Array out = Napi::Int32Array::New(env, tokens_.size());
        std::copy(tokens_.begin(), tokens_.end(), out.Data());
        return out;
    }

private:
    const llama_vocab * vocab_;
    std::string text_;
    bool add_special_, parse_special_;
    std::vector<llama_token> tokens_;
};

Napi::Value NativeModel::Tokenize(const Napi::CallbackInfo & info) {
    Napi::Value bad = check_tokenizer(info.Env());
    if (!bad.IsEmpty()) return bad;
    return (new TokenizeWorker(info, this))->start();
}

static std::vector<llama_token> read_tokens(const Napi::Value & v) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    return std::vector<llama_token>(a.Data(), a.Data() + a.ElementLength());
}

class DetokenizeWorker : public PromiseWorker {
public:
    DetokenizeWorker(const Napi::CallbackInfo & info, NativeModel * m)
        : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), vocab_(m->vocab()) {
        tokens_ = read_tokens(info[0]);
        Napi::Object o = info[1].As<Napi::Object>();
        remove_special_ = get_bool(o, "removeSpecial");
        unparse_special_ = get_bool(o, "unparseSpecial");
    }

protected:
    void run() override {
        text_ = detokenize_tokens(vocab_, tokens_, remove_special_, unparse_special_); // tokenize.cpp
    }
    Napi::Value result(Napi::Env env) override {
        // Bytes, not a string: the caller decodes (a token sequence may end mid-character).
        return Napi::Buffer<char>::Copy(env, text_.data(), text_.size());
    }

private:
    const llama_vocab * vocab_;
    std::vector<llama_token> tokens_;
    std::string text_;
    bool remove_special_, unparse_special_;
};

Napi::Value NativeModel::Detokenize(const Napi::CallbackInfo & info) {
    Napi::Value bad = check_tokenizer(info.Env());
    if (!bad.IsEmpty()) return bad;
    return (new DetokenizeWorker(info, this))->start();
}

// Pieces of single tokens, synchronously (each is a table lookup): bytes of all pieces
// concatenated plus an offsets array, for the tokenize CLI and streaming decode.
Napi::Value NativeModel::TokenPieces(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (disposed()) throw make_error(env, "ERR_DISPOSED", "the model is disposed");
    if (!has_tokenizer_) throw make_error(env, "ERR_UNSUPPORTED", kNoTokenizer);
    std::vector<llama_token> tokens = read_tokens(info[0]);
    bool special = info[1].As<Napi::Boolean>().Value();
    std::string bytes;
    Napi::Uint32Array offsets = Napi::Uint32Array::New(env, tokens.size() + 1);
    char buf[256];
    offsets[0] = 0;
    AbortGuard guard; // a GGML_ASSERT in a piece lookup becomes a JS error, as in TokenizeWorker
    for (size_t i = 0; i < tokens.size(); ++i) try {
        int32_t n = llama_token_to_piece(vocab_, tokens[i], buf, sizeof buf, 0, special);
        if (n < 0) {
            std::string big(-n, '\0');
            n = llama_token_to_piece(vocab_, tokens[i], big.data(), (int32_t) big.size(), 0, special);
            bytes.append(big.data(), std::max(n, 0));
        } else {
            bytes.append(buf, n);
        }
        offsets[i + 1] = (uint32_t) bytes.size();
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_INVALID_MODEL", std::string("llama.cpp could not render token ") + std::to_string(tokens[i]) + ": " + e.what());
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("bytes", Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size()));
    out.Set("offsets", offsets);
    return out;
}

Napi::Value NativeModel::Dispose(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (contexts_ > 0) throw make_error(env, "ERR_BUSY", "the model still has open contexts");
    if (model_) {
        owner_.reset(); // freed now, or by the last share (a grammar build still running)
        model_ = nullptr;
        vocab_ = nullptr;
    }
    return env.Undefined();
}

} // namespace llamafuse
