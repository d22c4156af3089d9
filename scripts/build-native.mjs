#!/usr/bin/env node
// Builds the native addon from source with cmake-js. llama.cpp's source is, in order:
//   vendor/llama.cpp   the subset a published package carries (scripts/prepack.mjs copied it,
//                      patches already applied; see vendor/llama.cpp/.llamafuse-source.json)
//   deps/llama.cpp     a development checkout: prepared at the pinned commit (llama.cpp.json)
//                      from node-llama-cpp's git bundle (a devDependency; no network), with
//                      native/patches/*.patch applied. Re-prepared only when the patches change.
// cmake/ninja rebuild only what changed.
//
// Environment:
//   LLAMAFUSE_PORTABLE=1   build for a generic CPU instead of this machine's instruction sets
//   LLAMAFUSE_CUDA=1       build ggml's CUDA backend and our CUDA kernels (needs nvcc + cuBLAS)
//   LLAMAFUSE_CUDA_ARCHITECTURES=90a   CUDA architectures (default 90a, Hopper)
//   LLAMAFUSE_LLAMA_TOOLS=1  also build llama.cpp's llama-bench (a baseline for benchmarks)
//   LLAMAFUSE_DEV_BINDINGS=0|1  the development-only attention bindings (tests, benchmarks):
//                          default on in a development checkout, off for the vendored source
//   LLAMAFUSE_JOBS=N       parallel compile jobs (default: number of CPUs)
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { cpus } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// llama.cpp.json is the one file that names the pinned commit.
export const LLAMA_CPP_COMMIT = JSON.parse(readFileSync(path.join(root, "llama.cpp.json"), "utf8")).commit;
const require = createRequire(import.meta.url);
const srcDir = path.join(root, "deps", "llama.cpp");
/** The published package's copy of the llama.cpp source it builds (scripts/prepack.mjs). */
export const vendoredDir = path.join(root, "vendor", "llama.cpp");
export const vendoredStamp = ".llamafuse-source.json";
const patchDir = path.join(root, "native", "patches");
const stampFile = path.join(srcDir, ".llamafuse-patches");

export const flag = (name) => ["1", "on", "true", "yes"].includes(String(process.env[name] ?? "").toLowerCase());
const flagOff = (name) => ["0", "off", "false", "no"].includes(String(process.env[name] ?? "").toLowerCase());

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

function digestOf(files) {
    const h = createHash("sha256").update(LLAMA_CPP_COMMIT);
    for (const f of files) h.update(path.basename(f)).update(readFileSync(f));
    return h.digest("hex");
}

export function patchesDigest() {
    return digestOf(patchFiles());
}

export function prepareLlamaCpp() {
    const patches = patchFiles();
    const digest = digestOf(patches);
    if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === digest) return srcDir;

    if (!existsSync(path.join(srcDir, ".git"))) {
        mkdirSync(path.dirname(srcDir), { recursive: true });
        console.log(`llamafuse: cloning llama.cpp ${LLAMA_CPP_COMMIT.slice(0, 8)} from node-llama-cpp's bundle`);
        run("git", ["clone", "--quiet", "--no-checkout", bundlePath(), srcDir]);
    }
    const git = (...args) => run("git", ["-C", srcDir, "-c", "advice.detachedHead=false", ...args]);
    // Files the previous patches changed, with their content and times: a file that ends up
    // the same after re-patching gets its time back, so ninja rebuilds only what a patch
    // change affects (a patched ggml header is included by nearly every llama.cpp source).
    const before = new Map();
    if (existsSync(path.join(srcDir, ".git"))) {
        // modified files, and the files patches added (untracked)
        const listed = (...args) => execFileSync("git", ["-C", srcDir, ...args], { encoding: "utf8" }).split("\n").filter(Boolean);
        const changed = [...listed("diff", "--name-only"), ...listed("ls-files", "--others", "--exclude-standard")];
        for (const f of changed) {
            const file = path.join(srcDir, f);
            if (existsSync(file)) before.set(file, { data: readFileSync(file), mtime: statSync(file).mtime });
        }
    }
    // Back to the pristine pinned tree (the files patches added removed too: git apply will not
    // create a file that exists), then apply our patches in order.
    git("checkout", "--quiet", "--force", LLAMA_CPP_COMMIT);
    git("clean", "--quiet", "--force", "-d");
    for (const p of patches) {
        try {
            git("apply", "--whitespace=nowarn", p);
        } catch {
            throw new Error(`llamafuse: patch ${path.basename(p)} no longer applies to llama.cpp ${LLAMA_CPP_COMMIT}`);
        }
        console.log(`llamafuse: applied ${path.basename(p)}`);
    }
    for (const [file, { data, mtime }] of before) {
        if (existsSync(file) && readFileSync(file).equals(data)) utimesSync(file, mtime, mtime);
    }
    writeFileSync(stampFile, digest);
    return srcDir;
}

/**
 * Whether to build the vendored source: a published package (no .git) that carries it. A
 * development checkout always builds deps/ (a vendor/ left by an interrupted npm pack is ignored).
 */
export function isVendored() {
    return existsSync(path.join(vendoredDir, "CMakeLists.txt")) && !existsSync(path.join(root, ".git"));
}

/** The llama.cpp source to build: the vendored copy (checked against llama.cpp.json) or deps/. */
export function llamaCppSource() {
    if (!isVendored()) return prepareLlamaCpp();
    const stamp = JSON.parse(readFileSync(path.join(vendoredDir, vendoredStamp), "utf8"));
    if (stamp.commit !== LLAMA_CPP_COMMIT) {
        throw new Error(`llamafuse: vendor/llama.cpp is llama.cpp ${stamp.commit}, but llama.cpp.json pins ${LLAMA_CPP_COMMIT}`);
    }
    return vendoredDir;
}

/**
 * Configures and builds the addon (target llamafuse) into `outDir`/Release/llamafuse.node.
 * `defs` are extra cmake-js -D options (--CDNAME=VALUE), after the ones taken from the environment.
 */
export function buildAddon({ source = llamaCppSource(), outDir = path.join(root, "build"), defs: extra = [] } = {}) {
    const cmakeJs = path.join(packageDir("cmake-js"), "bin", "cmake-js");
    const jobs = process.env.LLAMAFUSE_JOBS ?? String(Math.max(1, cpus().length));
    // Development-only bindings: on in a development checkout unless LLAMAFUSE_DEV_BINDINGS=0,
    // off for the vendored source (published package) unless LLAMAFUSE_DEV_BINDINGS=1.
    const devBindings = flag("LLAMAFUSE_DEV_BINDINGS") || (!flagOff("LLAMAFUSE_DEV_BINDINGS") && source !== vendoredDir);
    const defs = [
        `--CDLLAMA_CPP_DIR=${source}`,
        `--CDLLAMAFUSE_PORTABLE=${flag("LLAMAFUSE_PORTABLE") ? "ON" : "OFF"}`,
        `--CDLLAMAFUSE_CUDA=${flag("LLAMAFUSE_CUDA") ? "ON" : "OFF"}`,
        `--CDLLAMAFUSE_LLAMA_TOOLS=${flag("LLAMAFUSE_LLAMA_TOOLS") ? "ON" : "OFF"}`,
        `--CDLLAMAFUSE_DEV_BINDINGS=${devBindings ? "ON" : "OFF"}`,
        // no prebuilt level (build-prebuilt.mjs sets one); cmake-js drops empty -D values, so "OFF"
        "--CDLLAMAFUSE_CPU_VARIANT=OFF",
        ...extra,
    ];
    if (flag("LLAMAFUSE_CUDA")) defs.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.LLAMAFUSE_CUDA_ARCHITECTURES || "90a"}`);
    const out = ["--out", outDir];
    // Configure every time (a few seconds when nothing changed): `cmake-js build` alone skips
    // configuring an existing build folder, and the options above would not take effect.
    run(process.execPath, [cmakeJs, "configure", "--log-level", "warn", ...out, ...defs], { cwd: root });
    run(process.execPath, [cmakeJs, "build", "--log-level", "warn", ...out, "--parallel", jobs, "--target", "llamafuse", ...defs], { cwd: root });
    if (flag("LLAMAFUSE_LLAMA_TOOLS")) {
        // llama.cpp's own tools from the same tree, as baselines (binaries land in build/bin).
        // Its tests/ folder (test-backend-ops, test-tokenizer-0) is skipped under cmake-js by
        // llama.cpp itself; bench/gpu/ggml builds test-backend-ops on its own.
        run("cmake", ["--build", outDir, "--parallel", jobs, "--target", ...LLAMA_TOOLS], { cwd: root });
    }
    return path.join(outDir, "Release", "llamafuse.node");
}

/**
 * A published package's source build keeps only the addon: the build tree (llama.cpp's objects,
 * over 100 MB) is of no use once the addon is linked. Development checkouts keep it (incremental).
 */
export function dropBuildTree(outDir = path.join(root, "build")) {
    const addon = path.join(outDir, "Release", "llamafuse.node");
    const kept = path.join(root, ".llamafuse.node.tmp");
    renameSync(addon, kept);
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(path.dirname(addon), { recursive: true });
    renameSync(kept, addon);
}

const LLAMA_TOOLS = ["llama-bench"];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    try {
        buildAddon();
    } catch (err) {
        console.error(err instanceof Error ? err.message : err);
        process.exit(1);
    }
}
