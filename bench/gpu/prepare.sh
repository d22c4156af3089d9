#!/usr/bin/env bash
# Run HERE (not on the device) before the H200 run. Stages what the bare device machine
# needs and cannot get (no network, no Node) into .fattn-stage/ at the repository root,
# a folder git ignores (via .git/info/exclude), to be named in the run's `carry` list:
#
#   .fattn-stage/llama.cpp/   the pinned llama.cpp (llama.cpp.json) with native/patches/*.patch
#                             applied (both attention hooks) plus the bench-only perf cases
#                             of bench/gpu/ggml/test-backend-ops-llama3.patch; trimmed to
#                             ggml (CPU and CUDA backends only) and tests/test-backend-ops.cpp
#   .fattn-stage/bin/         fattn_bench built here for sm_90a, when nvcc is here (the device
#                             script rebuilds it if this binary does not run there)
#
# Works from a scratch clone, never touching deps/llama.cpp (the addon build owns that).
# Usage: bash bench/gpu/prepare.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stage="$root/.fattn-stage"
# the pinned commit, from the one file that names it
commit="$(sed -n 's/.*"commit": *"\([0-9a-f]\{40\}\)".*/\1/p' "$root/llama.cpp.json")"
[ -n "$commit" ] || { echo "prepare.sh: no commit in $root/llama.cpp.json" >&2; exit 1; }

cd "$root"
exclude="$(git rev-parse --git-path info/exclude)"
grep -qxF '/.fattn-stage/' "$exclude" 2>/dev/null || echo '/.fattn-stage/' >>"$exclude"

# Source of llama.cpp: the prepared tree's git objects if present, else node-llama-cpp's bundle.
if [ -d deps/llama.cpp/.git ]; then
    src=deps/llama.cpp
elif [ -f node_modules/node-llama-cpp/llama/gitRelease.bundle ]; then
    src=node_modules/node-llama-cpp/llama/gitRelease.bundle
else
    echo "prepare.sh: no llama.cpp source: run npm install (node-llama-cpp's bundle) first" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git clone --quiet --no-checkout "$src" "$tmp/llama.cpp"
git -C "$tmp/llama.cpp" -c advice.detachedHead=false checkout --quiet "$commit"
for p in native/patches/*.patch; do
    git -C "$tmp/llama.cpp" apply --whitespace=nowarn "$root/$p"
    echo "prepare.sh: applied $(basename "$p")"
done
git -C "$tmp/llama.cpp" apply --whitespace=nowarn "$root/bench/gpu/ggml/test-backend-ops-llama3.patch"
echo "prepare.sh: applied test-backend-ops-llama3.patch (bench-only perf cases)"

rm -rf "$stage"
mkdir -p "$stage/llama.cpp/tests" "$stage/bin"
# ggml without the backends the device build does not enable (keeps the carry small)
excludes=()
for d in "$tmp"/llama.cpp/ggml/src/ggml-*/; do
    name="$(basename "$d")"
    case "$name" in ggml-cpu|ggml-cuda) ;; *) excludes+=("--exclude=ggml/src/$name") ;; esac
done
tar -C "$tmp/llama.cpp" -cf - "${excludes[@]}" LICENSE ggml | tar -C "$stage/llama.cpp" -xf -
cp "$tmp/llama.cpp/tests/test-backend-ops.cpp" "$stage/llama.cpp/tests/"
echo "prepare.sh: staged ggml with backends: $(cd "$stage/llama.cpp/ggml/src" && ls -d ggml-*/ | tr -d / | tr '\n' ' ')"

if command -v nvcc >/dev/null 2>&1; then
    make -C bench/gpu -j"$(nproc)" OUT="$stage/bin" >"$stage/bin/build.log" 2>&1 \
        || { echo "prepare.sh: harness build failed, see $stage/bin/build.log" >&2; exit 1; }
    rm -f "$stage"/bin/*.o
    echo "prepare.sh: built $stage/bin/fattn_bench (sm_90a)"
else
    echo "prepare.sh: no nvcc here: the device script builds the harness itself"
fi
du -sh "$stage"
echo "prepare.sh: done. Carry .fattn-stage in the run call (bench/gpu/README.md)."
