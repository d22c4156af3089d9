#include "fattn_combine.cuh"
#include "fattn_combine_kernel.cuh"

namespace llamafuse::cuda {

void fattn_combine(const kernel_args & p, const float * part_o, const float2 * part_ml,
                   int n_splits, int G, int rows, cudaStream_t stream) {
    LF_CUDA_ASSERT(p.D > 0 && p.D <= 1024 && n_splits >= 1 && rows >= 1);
    LF_CUDA_ASSERT(p.dst != nullptr && part_o != nullptr && part_ml != nullptr);
    const int rows_total = p.n_seq_q * p.n_head_kv * rows;
    // Programmatic dependent launch on sm_90+: the combine grid is scheduled while the split
    // kernel drains instead of after a full launch gap (it waits in griddep_wait()). Only
    // when the loaded kernel was compiled for sm_90+: code JIT-compiled from older PTX has
    // no griddepcontrol in it and would read the partials too early (ggml-cuda checks the
    // same). Looked up once per device, on the first launch (outside graph capture).
    static int pdl_ok[64] = {};   // 0 unknown, 1 yes, 2 no
    int dev = 0;
    cudaGetDevice(&dev);
    if (dev >= 0 && dev < 64 && pdl_ok[dev] == 0) {
        int major = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaFuncAttributes fa = {};
        const bool have = cudaFuncGetAttributes(&fa, fattn_combine_kernel) == cudaSuccess;
        pdl_ok[dev] = major >= 9 && have && fa.ptxVersion >= 90 ? 1 : 2;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(rows_total);
    cfg.blockDim = dim3(p.D);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = dev >= 0 && dev < 64 && pdl_ok[dev] == 1 ? 1 : 0;
    cudaLaunchKernelEx(&cfg, fattn_combine_kernel, p, part_o, part_ml, n_splits, G, rows);
}

} // namespace llamafuse::cuda
