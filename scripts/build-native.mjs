#!/usr/bin/env node
// Builds the native addon: prepares llama.cpp's source at the pinned commit from
// node-llama-cpp's git bundle (no network), applies native/patches/*.patch, then runs
// cmake-js. Incremental: llama.cpp is re-prepared only when the patches change, and
// cmake/ninja rebuild only what changed.
//
// Environment:
//   LLAMAFUSE_PORTABLE=1   build for a generic CPU instead of -march=native
//   LLAMAFUSE_CUDA=1       build ggml's CUDA backend and our CUDA kernels (needs nvcc + cuBLAS)
//   LLAMAFUSE_CUDA_ARCHITECTURES=90a   CUDA architectures (default 90a, Hopper)
//   LLAMAFUSE_LLAMA_TOOLS=1  also build llama.cpp's llama-bench (a baseline for benchmarks)
//   LLAMAFUSE_JOBS=N       parallel compile jobs (default: number of CPUs)
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { cpus } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// llama.cpp.json is the one file that names the pinned commit.
export const LLAMA_CPP_COMMIT = JSON.parse(readFileSync(path.join(root, "llama.cpp.json"), "utf8")).commit;
const require = createRequire(import.meta.url);
const srcDir = path.join(root, "deps", "llama.cpp");
const patchDir = path.join(root, "native", "patches");
const stampFile = path.join(srcDir, ".llamafuse-patches");

const flag = (name) => ["1", "on", "true", "yes"].includes(String(process.env[name] ?? "").toLowerCase());

function run(cmd, args, opts = {}) {
    execFileSync(cmd, args, { stdio: "inherit", ...opts });
}

// Packages whose "exports" hide package.json: look for the folder along Node's search paths.
function packageDir(name) {
    for (const dir of require.resolve.paths(name) ?? []) {
        if (existsSync(path.join(dir, name, "package.json"))) return path.join(dir, name);
    }
    throw new Error(`llamafuse: package ${name} is not installed (run npm install)`);
}

function bundlePath() {
    const pkg = packageDir("node-llama-cpp");
    const bundle = path.join(pkg, "llama", "gitRelease.bundle");
    if (!existsSync(bundle)) throw new Error(`node-llama-cpp's llama.cpp bundle is missing: ${bundle}`);
    return bundle;
}

function patchFiles() {
    if (!existsSync(patchDir)) return [];
    return readdirSync(patchDir).filter((f) => f.endsWith(".patch")).sort().map((f) => path.join(patchDir, f));
}

function patchesDigest(files) {
    const h = createHash("sha256").update(LLAMA_CPP_COMMIT);
    for (const f of files) h.update(path.basename(f)).update(readFileSync(f));
    return h.digest("hex");
}

export function prepareLlamaCpp() {
    const patches = patchFiles();
    const digest = patchesDigest(patches);
    if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === digest) return srcDir;

    if (!existsSync(path.join(srcDir, ".git"))) {
        mkdirSync(path.dirname(srcDir), { recursive: true });
        console.log(`llamafuse: cloning llama.cpp ${LLAMA_CPP_COMMIT.slice(0, 8)} from node-llama-cpp's bundle`);
        run("git", ["clone", "--quiet", "--no-checkout", bundlePath(), srcDir]);
    }
    const git = (...args) => run("git", ["-C", srcDir, "-c", "advice.detachedHead=false", ...args]);
    // Back to the pristine pinned tree (only files that differ are touched, so ninja
    // rebuilds only what a patch change affects), then apply our patches in order.
    git("checkout", "--quiet", "--force", LLAMA_CPP_COMMIT);
    for (const p of patches) {
        try {
            git("apply", "--whitespace=nowarn", p);
        } catch {
            throw new Error(`llamafuse: patch ${path.basename(p)} no longer applies to llama.cpp ${LLAMA_CPP_COMMIT}`);
        }
        console.log(`llamafuse: applied ${path.basename(p)}`);
    }
    writeFileSync(stampFile, digest);
    return srcDir;
}

function buildAddon() {
    const cmakeJs = path.join(packageDir("cmake-js"), "bin", "cmake-js");
    const jobs = process.env.LLAMAFUSE_JOBS ?? String(Math.max(1, cpus().length));
    const defs = [
        `--CDLLAMAFUSE_PORTABLE=${flag("LLAMAFUSE_PORTABLE") ? "ON" : "OFF"}`,
        `--CDLLAMAFUSE_CUDA=${flag("LLAMAFUSE_CUDA") ? "ON" : "OFF"}`,
        `--CDLLAMAFUSE_LLAMA_TOOLS=${flag("LLAMAFUSE_LLAMA_TOOLS") ? "ON" : "OFF"}`,
    ];
    if (flag("LLAMAFUSE_CUDA")) defs.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.LLAMAFUSE_CUDA_ARCHITECTURES || "90a"}`);
    // Configure every time (a few seconds when nothing changed): `cmake-js build` alone skips
    // configuring an existing build folder, and the options above would not take effect.
    run(process.execPath, [cmakeJs, "configure", "--log-level", "warn", ...defs], { cwd: root });
    run(process.execPath, [cmakeJs, "build", "--log-level", "warn", "--parallel", jobs, "--target", "llamafuse", ...defs], { cwd: root });
    if (flag("LLAMAFUSE_LLAMA_TOOLS")) {
        // llama.cpp's own tools from the same tree, as baselines (binaries land in build/bin).
        // Its tests/ folder (test-backend-ops, test-tokenizer-0) is skipped under cmake-js by
        // llama.cpp itself; bench/gpu/ggml builds test-backend-ops on its own.
        run("cmake", ["--build", path.join(root, "build"), "--parallel", jobs, "--target", ...LLAMA_TOOLS], { cwd: root });
    }
}

const LLAMA_TOOLS = ["llama-bench"];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    try {
        prepareLlamaCpp();
        buildAddon();
    } catch (err) {
        console.error(err instanceof Error ? err.message : err);
        process.exit(1);
    }
}
