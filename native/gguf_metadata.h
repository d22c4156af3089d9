// Every key/value of a GGUF file, read with ggml's gguf reader and handed to JS whole:
// numbers and strings as such, numeric arrays as typed arrays, string arrays as string[].
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llamafuse {

struct GgufValue {
    int type = 0;        // gguf_type of the value, or of the elements for arrays
    bool is_array = false;
    std::vector<uint8_t> raw;           // numeric scalars and arrays, native byte order
    std::vector<std::string> strings;   // a string, or an array of strings
    size_t count = 0;
};

struct GgufTensor {
    std::string name;
    int type = 0;   // ggml_type
    int n_dims = 0;
};

struct GgufMetadata {
    std::vector<std::pair<std::string, GgufValue>> entries;
    std::vector<GgufTensor> tensors;

    const GgufValue * find(const std::string & key) const;
    // A numeric scalar as a double (false if absent, an array, or not a number).
    bool number(const std::string & key, double & out) const;
};

// Throws std::runtime_error when the file cannot be parsed.
GgufMetadata gguf_metadata_read(const std::string & path);
Napi::Object gguf_metadata_to_js(Napi::Env env, const GgufMetadata & meta);

} // namespace llamafuse
