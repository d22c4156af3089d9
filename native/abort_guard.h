// ggml aborts the process on a failed GGML_ASSERT. While a guard is active on the current
// thread (model loading, GGUF parsing), the abort is turned into a C++ exception instead:
// llama.cpp's loader catches it and returns NULL, and the process lives on. ggml's C code
// is compiled with -fexceptions (CMakeLists.txt) so the exception can unwind through it.
// Threads with no guard (ggml's compute workers) keep ggml's default: print and abort —
// which is why every input that could reach an assert during decode is validated first.
#pragma once

#include <stdexcept>
#include <string>

namespace llamafuse {

struct GgmlAbort : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void abort_guard_install();

class AbortGuard {
public:
    AbortGuard();
    ~AbortGuard();
    AbortGuard(const AbortGuard &) = delete;
    AbortGuard & operator=(const AbortGuard &) = delete;
    // The message of the last abort caught on this thread ("" if none).
    static std::string last_message();
private:
    bool prev_;
};

} // namespace llamafuse
