#include "log.h"

#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace llamafuse {

static thread_local std::string t_last_error;
static int g_level = 0; // 0: quiet, 1: warnings and errors, 2: everything

static void on_log(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR && text) {
        t_last_error = text;
        while (!t_last_error.empty() && (t_last_error.back() == '\n' || t_last_error.back() == ' ')) t_last_error.pop_back();
    }
    const bool show = g_level >= 2 || (g_level == 1 && (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN));
    if (show && text) fputs(text, stderr);
}

void log_install() {
    const char * env = getenv("LLAMAFUSE_LOG");
    if (env && *env) g_level = (strcmp(env, "debug") == 0 || strcmp(env, "2") == 0) ? 2 : 1;
    llama_log_set(on_log, nullptr);
}

std::string log_last_error() { return t_last_error; }
void log_clear_error() { t_last_error.clear(); }

} // namespace llamafuse
