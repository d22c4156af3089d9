// llama.cpp/ggml log routing. By default llama.cpp's chatter is kept off stderr (a library
// must not print); set LLAMAFUSE_LOG=1 (or =debug) to see it. The last error-level message
// on each thread is kept so a failed call can say what llama.cpp complained about.
#pragma once

#include <string>

namespace llamafuse {
void log_install();
std::string log_last_error();   // of the current thread
void log_clear_error();         // of the current thread
} // namespace llamafuse
