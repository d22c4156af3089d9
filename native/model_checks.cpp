#include "model_checks.h"

#include "common.h"

#include "ggml.h"
#include "gguf.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace llamafuse {

[[noreturn]] static void invalid(const std::string & why) { throw CodedError("ERR_INVALID_MODEL", "unsupported model: " + why); }

static bool ends_with(const std::string & s, const char * suffix) {
    const size_t n = strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

void model_check_tensors(const GgufMetadata & meta) {
    for (const GgufTensor & t : meta.tensors) {
        const ggml_type type = (ggml_type) t.type;
        const char * tname = (t.type >= 0 && t.type < GGML_TYPE_COUNT) ? ggml_type_name(type) : "unknown";
        if (type == GGML_TYPE_I8 || type == GGML_TYPE_I16 || type == GGML_TYPE_I32 || type == GGML_TYPE_I64) {
            invalid("tensor " + t.name + " has the integer type " + tname + ", which no llama.cpp graph takes for a weight");
        }
        // Norm weights and biases are added to or multiplied with F32 activations, which
        // ggml's CPU binary ops take only with an F32 operand ("binary_op: unsupported types").
        // By name, not by rank: a [n, 1] matrix (a reranker's cls.output.weight) looks 1-D to
        // ggml and may be F16.
        // BERT's token_types.weight: its first row is added to the embeddings as it is.
        const bool f32_only = ends_with(t.name, "norm.weight") || ends_with(t.name, ".bias") ||
                              t.name.find("rope_freqs") != std::string::npos || t.name.find("rope_factors") != std::string::npos ||
                              t.name == "token_types.weight";
        if (f32_only && type != GGML_TYPE_F32) {
            invalid("tensor " + t.name + " (a norm weight, bias, rope factor or token-type table) has type " + tname + "; llama.cpp's graphs need F32 there");
        }
    }
}

static void check_floats_finite(const std::string & key, const GgufValue & v) {
    const size_t n = v.count;
    if (v.type == GGUF_TYPE_FLOAT32 && v.raw.size() >= n * sizeof(float)) {
        for (size_t i = 0; i < n; ++i) {
            float x;
            memcpy(&x, v.raw.data() + i * sizeof x, sizeof x);
            if (!std::isfinite(x)) invalid(key + " is " + std::to_string(x) + " (must be finite)");
        }
    } else if (v.type == GGUF_TYPE_FLOAT64 && v.raw.size() >= n * sizeof(double)) {
        for (size_t i = 0; i < n; ++i) {
            double x;
            memcpy(&x, v.raw.data() + i * sizeof x, sizeof x);
            if (!std::isfinite(x)) invalid(key + " is " + std::to_string(x) + " (must be finite)");
        }
    }
}

void model_check_hparams(const GgufMetadata & meta) {
    const GgufValue * arch_v = meta.find("general.architecture");
    if (!arch_v || arch_v->is_array || arch_v->strings.empty()) return; // llama.cpp refuses it itself
    const std::string arch = arch_v->strings[0] + ".";
    for (const auto & [key, v] : meta.entries) {
        if (key.compare(0, arch.size(), arch) == 0) check_floats_finite(key, v);
    }
    for (const char * k : {"attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "attention.group_norm_epsilon"}) {
        double eps;
        if (meta.number(arch + k, eps) && !(eps >= 0.0)) invalid(arch + k + " is " + std::to_string(eps) + " (must be >= 0)");
    }
    // Head counts given as scalars (per-layer arrays are llama.cpp's to check).
    double n_head = 0, n_head_kv = 0, n_embd = 0, key_len = 0, n_rot = 0;
    const bool has_head = meta.number(arch + "attention.head_count", n_head);
    const bool has_kv = meta.number(arch + "attention.head_count_kv", n_head_kv);
    if (has_head && has_kv && n_head > 0 && n_head_kv > 0) {
        if (n_head_kv > n_head || std::fmod(n_head, n_head_kv) != 0.0) {
            invalid(arch + "attention.head_count_kv (" + std::to_string((long long) n_head_kv) + ") must divide " + arch +
                    "attention.head_count (" + std::to_string((long long) n_head) + ")");
        }
    }
    if (has_head && n_head > 0 && meta.number(arch + "rope.dimension_count", n_rot)) {
        double head_dim = 0;
        if (meta.number(arch + "attention.key_length", key_len)) head_dim = key_len;
        else if (meta.number(arch + "embedding_length", n_embd)) head_dim = std::floor(n_embd / n_head);
        if (std::fmod(n_rot, 2.0) != 0.0 || (head_dim > 0 && n_rot > head_dim)) {
            invalid(arch + "rope.dimension_count (" + std::to_string((long long) n_rot) + ") must be even and at most the head size (" +
                    std::to_string((long long) head_dim) + ")");
        }
    }
}

// llama.cpp's llama_unescape_rwkv_token, byte for byte: how an "rwkv" vocabulary's texts
// become the byte strings its tokenizer matches.
static std::string unescape_rwkv(const std::string & escaped) {
    std::string out;
    bool escaping = false;
    uint8_t hex_remaining = 0, hex_acc = 0;
    for (const char c : escaped) {
        if (hex_remaining != 0) {
            hex_acc = (uint8_t) ((hex_acc << 4) + ((c >= 'a') ? (c - 'a' + 10) : (c - '0')));
            if (--hex_remaining == 0) { out.push_back((char) hex_acc); hex_acc = 0; }
            continue;
        }
        if (escaping) {
            if (c == 't') out.push_back('\t');
            else if (c == 'n') out.push_back('\n');
            else if (c == 'r') out.push_back('\r');
            else if (c == 'x') hex_remaining = 2;
            else out.push_back(c);
            escaping = false;
            continue;
        }
        if (c == '\\') { escaping = true; continue; }
        out.push_back(c);
    }
    return out;
}

void model_check_vocab(const GgufMetadata & meta) {
    const GgufValue * model = meta.find("tokenizer.ggml.model");
    if (!model || model->is_array || model->strings.empty()) return; // llama.cpp refuses or defaults
    const std::string & kind = model->strings[0];
    if (kind == "none" || kind == "no_vocab") return;                // no tokenizer: see NativeModel::has_tokenizer
    const GgufValue * tokens = meta.find("tokenizer.ggml.tokens");
    if (tokens && tokens->is_array && tokens->count == 0) invalid("tokenizer.ggml.tokens is empty (a \"" + kind + "\" tokenizer needs its tokens)");
    if (kind == "rwkv" && tokens && tokens->is_array) {
        // The RWKV tokenizer takes the longest token matching at each position; when the first
        // byte starts some token but is not a token itself, it restarts from position 0 and
        // never ends (a hang inside tokenize, found by fuzzing). A real RWKV vocabulary has a
        // token for every byte.
        bool starts[256] = {}, single[256] = {};
        for (const std::string & t : tokens->strings) {
            const std::string b = unescape_rwkv(t);
            if (b.empty()) continue;
            starts[(uint8_t) b[0]] = true;
            if (b.size() == 1) single[(uint8_t) b[0]] = true;
        }
        for (int c = 0; c < 256; ++c) {
            if (starts[c] && !single[c]) {
                char hex[8];
                snprintf(hex, sizeof hex, "0x%02X", c);
                invalid(std::string("an \"rwkv\" vocabulary needs a token for every byte that starts a token, and byte ") + hex +
                        " has none (llama.cpp's RWKV tokenizer would loop forever)");
            }
        }
    }
}

} // namespace llamafuse
