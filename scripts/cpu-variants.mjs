// The prebuilt addon's instruction-set levels for linux-x64, best first. Names and ggml options
// are ggml's own (GGML_CPU_ALL_VARIANTS in ggml/src/CMakeLists.txt); each level is a whole
// addon (llama.cpp and ggml linked in statically, as in a source build), and the runtime loads
// the first one whose /proc/cpuinfo flags the CPU has (src/prebuilt.ts).
//
// Three levels, not ggml's thirteen: each costs a whole addon in the package (~8 MB), and these
// are the steps that change speed most: AVX-512 with VNNI/VBMI (Ice Lake, Zen 4, Sapphire Rapids
// and later; Skylake-X falls back to AVX2), AVX2 with FMA (Haswell, Zen 1 and later) and plain
// x86-64 (anything else). The AVX-512 level also carries ggml's AMX kernels (Sapphire Rapids and
// later): ggml uses them only where the kernel grants AMX and the tile instructions execute
// (native/patches/0006 tries them once under a SIGILL handler), so the level does not require
// the AMX flags and Ice Lake or Zen 4 load it too.

/** ggml CPU option -> the /proc/cpuinfo flags it needs (all of them). */
export const CPUINFO_FLAGS = {
    SSE42: ["sse4_2"],
    AVX: ["avx"],
    AVX2: ["avx2"],
    FMA: ["fma"],
    F16C: ["f16c"],
    BMI2: ["bmi2"],
    AVX_VNNI: ["avx_vnni"],
    AVX512: ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
    AVX512_VBMI: ["avx512vbmi"],
    AVX512_VNNI: ["avx512_vnni"],
    AVX512_BF16: ["avx512_bf16"],
    AMX_TILE: ["amx_tile"],
    AMX_INT8: ["amx_int8"],
    AMX_BF16: ["amx_bf16"],
};

const HASWELL = ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"];
const ICELAKE = [...HASWELL, "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AMX_TILE", "AMX_INT8"];

/** Options a level is built with but that the CPU need not have: ggml checks them at run time. */
const PROBED_AT_RUN_TIME = new Set(["AMX_TILE", "AMX_INT8"]);

export const CPU_VARIANTS = {
    "linux-x64": [
        { name: "icelake", features: ICELAKE },
        { name: "haswell", features: HASWELL },
        { name: "x64", features: [] },
    ],
};

/** The cpuinfo flags a variant needs. */
export function cpuinfoFlags(features) {
    return [...new Set(features.filter((f) => !PROBED_AT_RUN_TIME.has(f)).flatMap((f) => CPUINFO_FLAGS[f]))];
}
