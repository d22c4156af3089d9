# ggml's CPU backend for this machine: its instruction sets, named one by one from
# /proc/cpuinfo (as node-llama-cpp's prebuilt CPU variants and llama.cpp's
# GGML_CPU_ALL_VARIANTS name them), rather than -march=native.
#
# Why: -march=native also picks the compiler's tuning for the CPU it recognises, and GCC 12
# takes this Zen 4 for a Zen 3 (-mtune=znver3). On the 1B Q4_0 benchmark (1 thread, each
# runtime in its own process, 3 paired runs) ggml built that way decoded at 0.81x
# node-llama-cpp's speed, and built with the named instruction sets at 0.90x, in all 3 pairs
# ahead. Same instructions available, generic tuning.
#
# Elsewhere (no /proc/cpuinfo, not x86-64) ggml keeps -march=native.

function(llamafuse_ggml_cpu_features)
    if (NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64"
        OR NOT EXISTS "/proc/cpuinfo")
        set(GGML_NATIVE ON CACHE BOOL "" FORCE)
        return()
    endif()
    file(STRINGS "/proc/cpuinfo" flag_lines REGEX "^flags[ \t]*:" LIMIT_COUNT 1)
    if (NOT flag_lines)
        set(GGML_NATIVE ON CACHE BOOL "" FORCE)
        return()
    endif()
    string(REGEX REPLACE "^flags[ \t]*:[ \t]*" "" flags "${flag_lines}")
    string(REPLACE " " ";" flags "${flags}")

    # ggml option -> the cpuinfo flags it needs (all of them)
    set(map
        "GGML_SSE42=sse4_2"
        "GGML_AVX=avx"
        "GGML_AVX2=avx2"
        "GGML_FMA=fma"
        "GGML_F16C=f16c"
        "GGML_BMI2=bmi2"
        "GGML_AVX_VNNI=avx_vnni"
        "GGML_AVX512=avx512f,avx512cd,avx512vl,avx512dq,avx512bw"
        "GGML_AVX512_VBMI=avx512f,avx512vbmi"
        "GGML_AVX512_VNNI=avx512f,avx512_vnni"
        "GGML_AVX512_BF16=avx512f,avx512_bf16")
    # AMX (ggml's tile kernels for Q4_0/Q4_1/Q8_0/K-quant matmuls) is built where cpuinfo lists
    # it. It was off because every Q4_0 matmul raised SIGILL here: GCC 12 dropped the stores of
    # ggml's tile config (only the palette byte was kept), so ldtilecfg loaded no rows.
    # native/patches/0006 fixes that, and also tries the tile instructions once under a SIGILL
    # handler before ggml uses them, so a machine that lists AMX and faults on it keeps AVX-512.
    list(APPEND map "GGML_AMX_TILE=amx_tile" "GGML_AMX_INT8=amx_tile,amx_int8" "GGML_AMX_BF16=amx_tile,amx_bf16")
    set(enabled "")
    foreach (entry IN LISTS map)
        string(REPLACE "=" ";" parts "${entry}")
        list(GET parts 0 option)
        list(GET parts 1 needs)
        string(REPLACE "," ";" needs "${needs}")
        set(on ON)
        foreach (f IN LISTS needs)
            if (NOT f IN_LIST flags)
                set(on OFF)
            endif()
        endforeach()
        set(${option} ${on} CACHE BOOL "" FORCE)
        if (on)
            list(APPEND enabled ${option})
        endif()
    endforeach()
    set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
    string(REPLACE "GGML_" "" enabled "${enabled}")
    message(STATUS "llamafuse: ggml CPU instruction sets from /proc/cpuinfo: ${enabled}")
endfunction()

# LLAMAFUSE_PORTABLE: ggml's own defaults without -march=native (AVX2, FMA, F16C, BMI2 on
# x86-64; nothing newer), set explicitly so that a detection cached by an earlier configure
# of the same build folder does not linger.
function(llamafuse_ggml_cpu_portable)
    set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
    foreach (option GGML_SSE42 GGML_AVX GGML_AVX2 GGML_FMA GGML_F16C GGML_BMI2)
        set(${option} ON CACHE BOOL "" FORCE)
    endforeach()
    foreach (option GGML_AVX_VNNI GGML_AVX512 GGML_AVX512_VBMI GGML_AVX512_VNNI GGML_AVX512_BF16 GGML_AMX_TILE GGML_AMX_INT8 GGML_AMX_BF16)
        set(${option} OFF CACHE BOOL "" FORCE)
    endforeach()
endfunction()

# LLAMAFUSE_CPU_VARIANT (prebuilt addons, scripts/build-prebuilt.mjs): ggml's CPU backend for one
# named instruction-set level, as ggml's own GGML_CPU_ALL_VARIANTS defines them (x64, haswell,
# skylakex, zen4, sapphirerapids, ...): `features` lists the ggml options switched on (SSE42;AVX;
# ...), every other x86 option is switched off. The runtime picks the addon whose level the CPU
# has (src/prebuilt.ts), so one package is fast on baseline x86-64, AVX2 and AVX-512 machines.
function(llamafuse_ggml_cpu_variant features)
    set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
    foreach (feat SSE42 AVX AVX2 BMI2 AVX_VNNI FMA F16C AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16
                  AMX_TILE AMX_INT8 AMX_BF16)
        if (feat IN_LIST features)
            set(GGML_${feat} ON CACHE BOOL "" FORCE)
        else()
            set(GGML_${feat} OFF CACHE BOOL "" FORCE)
        endif()
    endforeach()
    # The addon's own code is compiled for the same level (the level is only loaded on a CPU that
    # has it): LLAMAFUSE_VARIANT_FLAGS, for the llamafuse target.
    set(flag_map
        "SSE42=-msse4.2" "AVX=-mavx" "AVX2=-mavx2" "FMA=-mfma" "F16C=-mf16c" "BMI2=-mbmi2" "AVX_VNNI=-mavxvnni"
        "AVX512=-mavx512f,-mavx512cd,-mavx512vl,-mavx512dq,-mavx512bw" "AVX512_VBMI=-mavx512vbmi"
        "AVX512_VNNI=-mavx512vnni" "AVX512_BF16=-mavx512bf16")
    set(variant_flags "")
    foreach (entry IN LISTS flag_map)
        string(REPLACE "=" ";" parts "${entry}")
        list(GET parts 0 feat)
        list(GET parts 1 flags_of)
        if (feat IN_LIST features)
            string(REPLACE "," ";" flags_of "${flags_of}")
            list(APPEND variant_flags ${flags_of})
        endif()
    endforeach()
    set(LLAMAFUSE_VARIANT_FLAGS "${variant_flags}" PARENT_SCOPE)
    message(STATUS "llamafuse: ggml CPU variant ${LLAMAFUSE_CPU_VARIANT}: ${features}")
endfunction()
