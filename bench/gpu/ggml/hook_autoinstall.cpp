// Linked into the bench build of test-backend-ops only: installs llamafuse's CUDA attention
// hook at start-up when LLAMAFUSE_CUDA_FATTN=1, so one binary measures ggml's kernels (unset)
// and ours (set) on the same FLASH_ATTN_EXT cases. Nothing is installed when unset: ggml
// runs exactly as at the pinned commit plus the (inert) hook point.
#include "fattn_cuda_hook.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
struct auto_install {
    auto_install() {
        const char * e = std::getenv("LLAMAFUSE_CUDA_FATTN");
        if (e != nullptr && std::strcmp(e, "1") == 0) {
            llamafuse::attention_cuda_hook_install();
            std::fprintf(stderr, "llamafuse: CUDA attention hook installed\n");
            std::atexit([] {
                std::fprintf(stderr, "llamafuse: CUDA attention hook ran %llu nodes\n", llamafuse::attention_cuda_runs());
            });
        }
    }
} g_auto_install;
}
