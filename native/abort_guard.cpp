#include "abort_guard.h"

#include "ggml.h"

#include <cstdio>
#include <cstdlib>

namespace llamafuse {

static thread_local bool t_guarded = false;
static thread_local std::string t_last_message;

static void on_ggml_abort(const char * message) {
    if (t_guarded) {
        t_last_message = message ? message : "ggml abort";
        throw GgmlAbort(t_last_message);
    }
    // Unguarded thread: ggml's default behaviour (it calls abort() after we return).
    fprintf(stderr, "%s\n", message ? message : "ggml abort");
}

void abort_guard_install() { ggml_set_abort_callback(on_ggml_abort); }

AbortGuard::AbortGuard() : prev_(t_guarded) {
    t_guarded = true;
    t_last_message.clear();
}
AbortGuard::~AbortGuard() { t_guarded = prev_; }

std::string AbortGuard::last_message() { return t_last_message; }

} // namespace llamafuse
