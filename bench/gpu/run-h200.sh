#!/usr/bin/env bash
# One-shot H200 run for llamafuse's CUDA attention (see bench/gpu/README.md for the exact
# device call). On a bare machine with the CUDA toolkit, cmake, ninja and python3 (no Node,
# no network), from the repository root, with .fattn-stage/ carried (bench/gpu/prepare.sh):
#
#   1. starts building llama.cpp's test-backend-ops (pinned tree, ggml CUDA, sm_90a only,
#      our kernels linked in) in the background, at low priority;
#   2. builds the standalone harness (or uses the one prepare.sh built, if it runs here),
#      checks the kernels against the float64 reference, measures the copy ceiling and
#      times decode and prefill (CUDA-graph replay, so the build's CPU load does not leak in);
#   3. if the build finished in time: ggml's own CPU-vs-CUDA check of our kernels through
#      the hook, then `perf -o FLASH_ATTN_EXT` on the Llama-3-8B shapes, hook off and on;
#   4. prints a short table last.
# Everything it writes goes under $OUT (the device tool returns it) or /tmp.
# Time: BUDGET seconds in all (default 500), steps skipped when too little is left.
set -uo pipefail

T0=$SECONDS
BUDGET=${BUDGET:-500}
OUT=${OUT:-${TMPDIR:-/tmp}/fattn-out}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stage="$root/.fattn-stage"
work=${TMPDIR:-/tmp}/fattn-work
mkdir -p "$work"
cd "$root"

log() { echo "[$((SECONDS - T0))s] $*"; }
kill_tree() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done; kill "$1" 2>/dev/null; }
left() { echo $((BUDGET - (SECONDS - T0))); }

log "llamafuse CUDA attention run: $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,memory.used \
    --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
log "$(nvcc --version | tail -1); $(cmake --version | head -1); ninja $(ninja --version 2>/dev/null || echo missing)"
if [ ! -d "$stage/llama.cpp/ggml" ]; then
    log "WARNING: $stage missing (run bench/gpu/prepare.sh here and carry .fattn-stage): no llama.cpp comparison"
fi

# ---- 1. llama.cpp test-backend-ops build, in the background --------------------------------
cuda_home="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
cmake_extra=()
find_cublas() {
    # The toolkit's own cuBLAS if it has one; else the one in the Python wheels (nvidia-cublas)
    if ls "$cuda_home"/lib64/libcublas.so* "$cuda_home"/targets/*/lib/libcublas.so* >/dev/null 2>&1 &&
       ls "$cuda_home"/include/cublas_v2.h "$cuda_home"/targets/*/include/cublas_v2.h >/dev/null 2>&1; then
        log "cuBLAS: from the toolkit at $cuda_home"
        return 0
    fi
    local site lib lt inc
    site="$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)" || return 1
    lib="$(find "$site/nvidia" -name 'libcublas.so*' 2>/dev/null | head -1)"
    lt="$(find "$site/nvidia" -name 'libcublasLt.so*' 2>/dev/null | head -1)"
    inc="$(find "$site/nvidia" -name cublas_v2.h 2>/dev/null | head -1)"
    [ -n "$lib" ] && [ -n "$lt" ] && [ -n "$inc" ] || return 1
    mkdir -p "$work/cublas"
    ln -sf "$lib" "$work/cublas/libcublas.so"
    ln -sf "$lt" "$work/cublas/libcublasLt.so"
    cmake_extra=(-DCUDA_cublas_LIBRARY="$work/cublas/libcublas.so" -DCUDA_cublasLt_LIBRARY="$work/cublas/libcublasLt.so"
                 -DCMAKE_CXX_FLAGS="-I$(dirname "$inc")" -DCMAKE_CUDA_FLAGS="-I$(dirname "$inc")")
    export LD_LIBRARY_PATH="$(dirname "$lib"):$(dirname "$lt"):${LD_LIBRARY_PATH:-}"
    log "cuBLAS: from the Python wheels ($(dirname "$lib"))"
}

# ggml-cuda also links the driver library (libcuda.so, for its VMM pool): the toolkit's stub
# if it has one, else the driver's own libcuda.so.1.
find_libcuda() {
    if ls "$cuda_home"/lib64/stubs/libcuda.so "$cuda_home"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1; then
        return 0
    fi
    local so
    so="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')"
    [ -n "$so" ] || so="$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)"
    [ -n "$so" ] || return 0   # let CMake say what it misses
    mkdir -p "$work/cublas"
    ln -sf "$so" "$work/cublas/libcuda.so"
    cmake_extra+=(-DCUDA_cuda_driver_LIBRARY="$work/cublas/libcuda.so")
    log "libcuda: $so"
}

tbo="$work/ggml-build/test-backend-ops"
build_pid=""
prebuilt=""
have_cublas=""
[ -d "$stage/llama.cpp/ggml" ] && find_cublas && have_cublas=1
# The binary prebuild-ggml.sh linked elsewhere against stand-ins for cuBLAS and the driver:
# used if every library and symbol resolves here (LD_BIND_NOW), which spares the build.
if [ -n "$have_cublas" ] && [ -f "$stage/bin/test-backend-ops.xz" ]; then
    export LD_LIBRARY_PATH="$cuda_home/lib64:$cuda_home/lib:$(ls -d "$cuda_home"/targets/*/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
    pre="$work/test-backend-ops.prebuilt"
    { xz -dc "$stage/bin/test-backend-ops.xz" 2>/dev/null ||
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$stage/bin/test-backend-ops.xz"; } >"$pre"
    chmod +x "$pre"
    if LD_BIND_NOW=1 "$pre" --list-ops >"$OUT/tbo-prebuilt-check.txt" 2>&1; then
        tbo="$pre"; prebuilt=1
        log "test-backend-ops: the prebuilt binary runs here (no build)"
    else
        log "test-backend-ops: the prebuilt binary does not start here, building instead:"
        tail -3 "$OUT/tbo-prebuilt-check.txt"; ldd "$pre" 2>&1 | grep 'not found'
    fi
fi
if [ -z "$prebuilt" ] && [ -n "$have_cublas" ]; then
    find_libcuda
    (
        cmake -S bench/gpu/ggml -B "$work/ggml-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_CUDA_ARCHITECTURES=90a -DLLAMA_CPP_DIR="$stage/llama.cpp" "${cmake_extra[@]}" \
            && nice -n 10 cmake --build "$work/ggml-build" --target test-backend-ops -j "$JOBS"
    ) >"$OUT/ggml-build.log" 2>&1 &
    build_pid=$!
    log "test-backend-ops build started (pid $build_pid, log ggml-build.log)"
elif [ -z "$prebuilt" ]; then
    log "test-backend-ops: skipped (no staged tree or no cuBLAS)"
fi

# ---- 2. harness -------------------------------------------------------------------------------
bench="$stage/bin/fattn_bench"
if [ -x "$bench" ] && "$bench" --cpu-selftest >"$OUT/selftest.txt" 2>&1; then
    log "harness: using the binary prepare.sh built"
else
    log "harness: building (sm_90a)"
    build_harness() {
        if command -v make >/dev/null 2>&1; then
            make -C bench/gpu -j"$JOBS" OUT="$work/bench"
        else   # no make: one nvcc call
            mkdir -p "$work/bench" && k=native/kernels/cuda &&
            nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I"$k" -Ibench/gpu/wgmma -Ibench/gpu -o "$work/bench/fattn_bench" \
                bench/gpu/fattn_bench.cu "$k"/fattn_decode.cu "$k"/fattn_decode_plan.cu "$k"/fattn_combine.cu \
                "$k"/fattn_prefill.cu bench/gpu/wgmma/fattn_prefill_wgmma.cu "$k"/fattn_cuda.cu \
                bench/gpu/reference.cpp bench/gpu/emulate.cpp bench/gpu/selftest.cpp
        fi
    }
    if build_harness >"$OUT/harness-build.log" 2>&1; then
        bench="$work/bench/fattn_bench"
        "$bench" --cpu-selftest >"$OUT/selftest.txt" 2>&1
    else
        log "harness build FAILED:"; tail -30 "$OUT/harness-build.log"; bench=""
    fi
fi
tail -1 "$OUT/selftest.txt" 2>/dev/null

harness_rc=1
if [ -n "$bench" ]; then
    log "harness: correctness + timing"
    timeout $(( $(left) > 270 ? 240 : ($(left) > 60 ? $(left) - 30 : 30) )) "$bench" --json "$OUT/harness.json" 2>&1 | tee "$OUT/harness.txt"
    harness_rc=${PIPESTATUS[0]}
    log "harness exit $harness_rc"
fi

# ---- 2b. the experimental wgmma prefill, each descriptor variant in its own process ----------
# (the tensor-core decode, fattn_run's f16 decode, is checked and timed in the main run above)
# Run while the llama.cpp build is still going (it costs nothing then), else after step 3.
wgmma_done=""
run_wgmma() {
    wgmma_done=1
    [ -n "$bench" ] || return 0
    for variant in 0 1; do
        if [ "$(left)" -gt 150 ]; then
            log "EXPERIMENTAL wgmma prefill, variant $variant (1 and 2 warpgroups per block)"
            timeout 120 "$bench" --wgmma "$variant" >"$OUT/wgmma-$variant.txt" 2>&1
            echo "  exit $?: $(grep -h '^== wgmma summary' "$OUT/wgmma-$variant.txt" | cut -c4-)"
        fi
    done
}
if [ -n "$build_pid" ] && kill -0 "$build_pid" 2>/dev/null; then
    run_wgmma
fi

# ---- 3. llama.cpp's kernels vs ours through test-backend-ops ---------------------------------
ggml_ok=0
[ -n "$prebuilt" ] && ggml_ok=1
if [ -n "$build_pid" ]; then
    wait_s=$(( $(left) - 150 ))
    log "waiting up to ${wait_s}s for the test-backend-ops build"
    while kill -0 "$build_pid" 2>/dev/null && [ "$wait_s" -gt 0 ]; do sleep 5; wait_s=$((wait_s - 5)); done
    if kill -0 "$build_pid" 2>/dev/null; then
        log "test-backend-ops build not done in time: skipped ($(grep -c '^\[' "$OUT/ggml-build.log") steps logged)"
        kill_tree "$build_pid"
    elif wait "$build_pid" && [ -x "$tbo" ]; then
        ggml_ok=1
        log "test-backend-ops built"
    else
        log "test-backend-ops build FAILED:"; tail -25 "$OUT/ggml-build.log"
    fi
fi

shapes='hsk=128,hsv=128,nh=8,nr23=\[4,1\]'
if [ "$ggml_ok" = 1 ] && [ "$(left)" -gt 120 ]; then
    log "ggml check of our kernels (hook on) against ggml's CPU backend: FLASH_ATTN_EXT, D 64/128, f16/q8_0"
    # LLAMAFUSE_CUDA_FATTN_ALL=1: prefill and short decodes too, which the hook otherwise leaves to ggml
    LLAMAFUSE_CUDA_FATTN=1 LLAMAFUSE_CUDA_FATTN_ALL=1 timeout 60 "$tbo" test -b CUDA0 -o FLASH_ATTN_EXT \
        -p 'hsk=(64|128),hsv=(64|128),.*type_K=(f16|q8_0),type_V=(f16|q8_0)' >"$OUT/tbo-test-hook.txt" 2>&1
    echo "  exit $?: $(grep -c 'mOK' "$OUT/tbo-test-hook.txt") OK, $(grep -c 'mFAIL' "$OUT/tbo-test-hook.txt") FAIL; $(grep -E 'tests passed|hook ran' "$OUT/tbo-test-hook.txt" | tr '\n' ' ')"
    grep 'mFAIL' "$OUT/tbo-test-hook.txt" | head -5
    if [ "$(left)" -gt 85 ]; then
        log "perf, hook off (ggml's kernels)"
        timeout 60 "$tbo" perf -b CUDA0 -o FLASH_ATTN_EXT -p "$shapes" >"$OUT/tbo-perf-ggml.txt" 2>&1
        log "perf, hook on (ours, prefill included)"
        LLAMAFUSE_CUDA_FATTN=1 LLAMAFUSE_CUDA_FATTN_ALL=1 timeout 60 "$tbo" perf -b CUDA0 -o FLASH_ATTN_EXT -p "$shapes" >"$OUT/tbo-perf-ours.txt" 2>&1
        grep -h 'hook ran' "$OUT/tbo-perf-ours.txt"
    fi
fi

[ -n "$wgmma_done" ] || run_wgmma

# ---- 3b. compute-sanitizer on a few small shapes, if time is left (memcheck, racecheck) --------
if [ -n "$bench" ] && command -v compute-sanitizer >/dev/null 2>&1; then
    for tool in memcheck racecheck; do
        if [ "$(left)" -gt 75 ]; then
            log "compute-sanitizer --tool $tool (tiny set)"
            timeout 60 compute-sanitizer --tool "$tool" --error-exitcode 3 "$bench" --tiny >"$OUT/sanitizer-$tool.txt" 2>&1
            echo "  exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|correctness \(tiny\)' "$OUT/sanitizer-$tool.txt" | tr '\n' ' ')"
        fi
    done
fi

# ---- 4. table -------------------------------------------------------------------------------
log "done"
echo
echo "================ llamafuse CUDA attention, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
sed -n '/^== summary/,$p' "$OUT/harness.txt" 2>/dev/null
grep -h '^== wgmma summary' "$OUT"/wgmma-*.txt 2>/dev/null | cut -c4-
for f in "$OUT"/sanitizer-*.txt; do [ -s "$f" ] && echo "$(basename "$f" .txt): $(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tr '\n' ' ')"; done
[ -s "$OUT/tbo-test-hook.txt" ] && echo "ggml test -o FLASH_ATTN_EXT, hook on: $(grep -c 'mOK' "$OUT/tbo-test-hook.txt") OK, $(grep -c 'mFAIL' "$OUT/tbo-test-hook.txt") FAIL; $(grep -h 'hook ran' "$OUT/tbo-test-hook.txt")"
if [ -s "$OUT/tbo-perf-ggml.txt" ] && [ -s "$OUT/tbo-perf-ours.txt" ]; then
    python3 - "$OUT/tbo-perf-ggml.txt" "$OUT/tbo-perf-ours.txt" <<'EOF'
import re, sys
def parse(path):
    rows = {}
    for line in open(path, errors="replace"):
        m = re.search(r"FLASH_ATTN_EXT\((.*)\):\s+\d+ runs -\s+([\d.]+) us/run", line)
        if not m:
            continue
        typ = re.search(r"type_K=(\w+)", m.group(1)).group(1)
        kv = int(re.search(r"\bkv=(\d+)", m.group(1)).group(1))
        nb = int(re.search(r"\bnb=(\d+)", m.group(1)).group(1))
        rows[(typ, kv, nb)] = float(m.group(2))
    return rows
g, o = parse(sys.argv[1]), parse(sys.argv[2])
print("test-backend-ops perf FLASH_ATTN_EXT, 32 q / 8 kv heads, D 128 (same process shapes, buffers reused: 4K decode is L2-resident)")
print("| type | kv | tokens | ggml us | ours us | ggml/ours |")
for k in sorted(g):
    if k in o:
        print(f"| {k[0]} | {k[1]} | {k[2]} | {g[k]:.1f} | {o[k]:.1f} | {g[k] / o[k]:.2f}x |")
EOF
fi
# The device tool returns at most 8 files from $OUT: keep the main ones, archive the rest.
tar -C "$OUT" -czf "$work/logs.tar.gz" . 2>/dev/null && mv "$work/logs.tar.gz" "$OUT/logs.tar.gz" &&
    find "$OUT" -maxdepth 1 -type f ! -name logs.tar.gz ! -name 'harness.*' ! -name 'tbo-perf-*' -delete
exit $harness_rc
