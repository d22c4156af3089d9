#include "gguf_metadata.h"

#include "ggml.h"
#include "gguf.h"

#include <cstring>
#include <memory>
#include <stdexcept>

namespace llamafuse {

static size_t scalar_size(int type) {
    switch (type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
        case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
        case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
        default: return 0;
    }
}

GgufMetadata gguf_metadata_read(const std::string & path) {
    // With a (no_alloc) ggml context: the tensor infos come back as ggml tensors, with their dims.
    ggml_context * tensors_ctx = nullptr;
    gguf_init_params params = {/*no_alloc*/ true, /*ctx*/ &tensors_ctx};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> ctx(gguf_init_from_file(path.c_str(), params), gguf_free);
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> tctx(tensors_ctx, ggml_free);
    if (!ctx) throw std::runtime_error("cannot parse GGUF metadata of " + path);
    GgufMetadata meta;
    const int64_t n_tensors = gguf_get_n_tensors(ctx.get());
    meta.tensors.reserve(n_tensors);
    for (int64_t i = 0; i < n_tensors; ++i) {
        GgufTensor t;
        t.name = gguf_get_tensor_name(ctx.get(), i);
        t.type = (int) gguf_get_tensor_type(ctx.get(), i);
        const ggml_tensor * gt = tctx ? ggml_get_tensor(tctx.get(), t.name.c_str()) : nullptr;
        t.n_dims = gt ? ggml_n_dims(gt) : 0;
        meta.tensors.push_back(std::move(t));
    }
    const int64_t n = gguf_get_n_kv(ctx.get());
    meta.entries.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
        GgufValue v;
        int kv_type = gguf_get_kv_type(ctx.get(), i);
        if (kv_type == GGUF_TYPE_ARRAY) {
            v.is_array = true;
            v.type = gguf_get_arr_type(ctx.get(), i);
            v.count = gguf_get_arr_n(ctx.get(), i);
            if (v.type == GGUF_TYPE_STRING) {
                v.strings.reserve(v.count);
                for (size_t j = 0; j < v.count; ++j) v.strings.emplace_back(gguf_get_arr_str(ctx.get(), i, j));
            } else if (size_t sz = scalar_size(v.type)) {
                const uint8_t * data = static_cast<const uint8_t *>(gguf_get_arr_data(ctx.get(), i));
                v.raw.assign(data, data + sz * v.count);
            } // arrays of arrays are not produced by llama.cpp's writers; kept as empty
        } else {
            v.type = kv_type;
            v.count = 1;
            if (kv_type == GGUF_TYPE_STRING) {
                v.strings.emplace_back(gguf_get_val_str(ctx.get(), i));
            } else if (size_t sz = scalar_size(kv_type)) {
                const uint8_t * data = static_cast<const uint8_t *>(gguf_get_val_data(ctx.get(), i));
                v.raw.assign(data, data + sz);
            }
        }
        meta.entries.emplace_back(gguf_get_key(ctx.get(), i), std::move(v));
    }
    return meta;
}

const GgufValue * GgufMetadata::find(const std::string & key) const {
    for (const auto & [k, v] : entries) if (k == key) return &v;
    return nullptr;
}

template <typename T>
static T read_at(const std::vector<uint8_t> & raw, size_t i);

bool GgufMetadata::number(const std::string & key, double & out) const {
    const GgufValue * v = find(key);
    if (!v || v->is_array || v->raw.empty()) return false;
    switch (v->type) {
        case GGUF_TYPE_UINT8: out = read_at<uint8_t>(v->raw, 0); return true;
        case GGUF_TYPE_INT8: out = read_at<int8_t>(v->raw, 0); return true;
        case GGUF_TYPE_UINT16: out = read_at<uint16_t>(v->raw, 0); return true;
        case GGUF_TYPE_INT16: out = read_at<int16_t>(v->raw, 0); return true;
        case GGUF_TYPE_UINT32: out = read_at<uint32_t>(v->raw, 0); return true;
        case GGUF_TYPE_INT32: out = read_at<int32_t>(v->raw, 0); return true;
        case GGUF_TYPE_UINT64: out = (double) read_at<uint64_t>(v->raw, 0); return true;
        case GGUF_TYPE_INT64: out = (double) read_at<int64_t>(v->raw, 0); return true;
        case GGUF_TYPE_FLOAT32: out = read_at<float>(v->raw, 0); return true;
        case GGUF_TYPE_FLOAT64: out = read_at<double>(v->raw, 0); return true;
        default: return false;
    }
}

template <typename T>
static T read_at(const std::vector<uint8_t> & raw, size_t i) {
    T x;
    memcpy(&x, raw.data() + i * sizeof(T), sizeof(T));
    return x;
}

static Napi::Value scalar_to_js(Napi::Env env, const GgufValue & v) {
    switch (v.type) {
        case GGUF_TYPE_UINT8: return Napi::Number::New(env, read_at<uint8_t>(v.raw, 0));
        case GGUF_TYPE_INT8: return Napi::Number::New(env, read_at<int8_t>(v.raw, 0));
        case GGUF_TYPE_UINT16: return Napi::Number::New(env, read_at<uint16_t>(v.raw, 0));
        case GGUF_TYPE_INT16: return Napi::Number::New(env, read_at<int16_t>(v.raw, 0));
        case GGUF_TYPE_UINT32: return Napi::Number::New(env, read_at<uint32_t>(v.raw, 0));
        case GGUF_TYPE_INT32: return Napi::Number::New(env, read_at<int32_t>(v.raw, 0));
        case GGUF_TYPE_FLOAT32: return Napi::Number::New(env, read_at<float>(v.raw, 0));
        case GGUF_TYPE_FLOAT64: return Napi::Number::New(env, read_at<double>(v.raw, 0));
        case GGUF_TYPE_BOOL: return Napi::Boolean::New(env, read_at<uint8_t>(v.raw, 0) != 0);
        // 64-bit integers: a number when exact, a BigInt otherwise.
        case GGUF_TYPE_UINT64: {
            uint64_t x = read_at<uint64_t>(v.raw, 0);
            return x <= (1ull << 53) ? Napi::Number::New(env, (double) x) : Napi::BigInt::New(env, x).As<Napi::Value>();
        }
        case GGUF_TYPE_INT64: {
            int64_t x = read_at<int64_t>(v.raw, 0);
            return (x <= (1ll << 53) && x >= -(1ll << 53)) ? Napi::Number::New(env, (double) x) : Napi::BigInt::New(env, x).As<Napi::Value>();
        }
        case GGUF_TYPE_STRING: return Napi::String::New(env, v.strings.empty() ? "" : v.strings[0]);
        default: return env.Null();
    }
}

template <typename TypedArray, typename T>
static Napi::Value typed(Napi::Env env, const GgufValue & v) {
    TypedArray a = TypedArray::New(env, v.count);
    if (v.count) memcpy(a.Data(), v.raw.data(), v.count * sizeof(T));
    return a;
}

static Napi::Value array_to_js(Napi::Env env, const GgufValue & v) {
    switch (v.type) {
        case GGUF_TYPE_UINT8: return typed<Napi::Uint8Array, uint8_t>(env, v);
        case GGUF_TYPE_INT8: return typed<Napi::Int8Array, int8_t>(env, v);
        case GGUF_TYPE_UINT16: return typed<Napi::Uint16Array, uint16_t>(env, v);
        case GGUF_TYPE_INT16: return typed<Napi::Int16Array, int16_t>(env, v);
        case GGUF_TYPE_UINT32: return typed<Napi::Uint32Array, uint32_t>(env, v);
        case GGUF_TYPE_INT32: return typed<Napi::Int32Array, int32_t>(env, v);
        case GGUF_TYPE_FLOAT32: return typed<Napi::Float32Array, float>(env, v);
        case GGUF_TYPE_FLOAT64: return typed<Napi::Float64Array, double>(env, v);
        case GGUF_TYPE_UINT64: return typed<Napi::BigUint64Array, uint64_t>(env, v);
        case GGUF_TYPE_INT64: return typed<Napi::BigInt64Array, int64_t>(env, v);
        case GGUF_TYPE_BOOL: {
            Napi::Array a = Napi::Array::New(env, v.count);
            for (size_t i = 0; i < v.count; ++i) a.Set(i, Napi::Boolean::New(env, v.raw[i] != 0));
            return a;
        }
        case GGUF_TYPE_STRING: {
            Napi::Array a = Napi::Array::New(env, v.strings.size());
            for (size_t i = 0; i < v.strings.size(); ++i) a.Set(i, Napi::String::New(env, v.strings[i]));
            return a;
        }
        default: return Napi::Array::New(env, 0);
    }
}

Napi::Object gguf_metadata_to_js(Napi::Env env, const GgufMetadata & meta) {
    Napi::Object out = Napi::Object::New(env);
    for (const auto & [key, v] : meta.entries) out.Set(key, v.is_array ? array_to_js(env, v) : scalar_to_js(env, v));
    return out;
}

} // namespace llamafuse
