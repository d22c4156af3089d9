#!/usr/bin/env node
// npm run check:cuda — compiles every .cu of ours (native/kernels/cuda/) for sm_90a with
// the nvcc on PATH, prints ptxas's register / shared-memory / spill report per kernel, and
// fails on any compile error. Needs no GPU and no cuBLAS (our kernels use neither), so it
// runs on CPU-only machines that have nvcc; where nvcc is absent it says so and exits 0.
//
// The hook glue (fattn_cuda_hook.cu) includes ggml's headers with the CUDA
// hook patch applied: deps/llama.cpp as the build prepared it (prepared here if needed).
//
// Then (unless --no-emu) it builds bench/gpu/emu/emu_test with the host C++ compiler and
// runs it: the real decode / combine / prefill kernel code on a CPU emulation of CUDA,
// against a float64 reference. That checks the kernels' logic on machines with no GPU.
//
// Last (unless --no-params), where the addon's CPU build of ggml exists (npm install made
// it), bench/gpu's params_test: the hook's translation of real ggml FLASH_ATTN_EXT nodes,
// checked against ggml's own CPU kernel, and the hook's policy (which shapes it takes).
//
// Environment: LLAMAFUSE_CUDA_ARCH=90a (compute/sm suffix), NVCC=path/to/nvcc, CXX.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const kernelDir = path.join(root, "native", "kernels", "cuda");
// Experimental kernels that are not dispatched (not part of the shipped set), checked here too.
const devKernelDirs = [path.join(root, "bench", "gpu", "wgmma")];
const nvcc = process.env.NVCC || "nvcc";
const arch = process.env.LLAMAFUSE_CUDA_ARCH || "90a";

function hasNvcc() {
    const r = spawnSync(nvcc, ["--version"], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim().split("\n").pop() : null;
}

// ptxas -v prints, per kernel: "Compiling entry function 'X'", then the stack/spill line,
// then "Used N registers, ...". Keep those, with the demangled-enough kernel name.
function summarize(log) {
    const out = [];
    let name = null;
    let spillBytes = 0;
    for (const line of log.split("\n")) {
        const entry = line.match(/Compiling entry function '([^']+)'/);
        if (entry) {
            name = entry[1].replace(/^_ZN9llamafuse4cuda/, "").replace(/^\d+/, "");
            continue;
        }
        const spill = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
        if (spill && name) {
            spillBytes += Number(spill[2]) + Number(spill[3]);
            out.push(`  ${name}\n      ${line.trim()}`);
            continue;
        }
        const regs = line.match(/Used (\d+) registers.*/);
        if (regs && name) {
            out.push(`      ${regs[0].trim()}`);
            name = null;
        }
    }
    return { text: out.join("\n"), spillBytes };
}

async function main() {
    const version = hasNvcc();
    if (!version) {
        console.log(`check:cuda skipped: nvcc not found (looked for "${nvcc}" on PATH)`);
        return 0;
    }
    const cuFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".cu")).sort().map((f) => path.join(dir, f)) : []);
    const sources = [kernelDir, ...devKernelDirs].flatMap(cuFiles);
    if (sources.length === 0) {
        console.log("check:cuda: no .cu files under native/kernels/cuda");
        return 0;
    }
    console.log(`check:cuda: ${version}; target sm_${arch}; ${sources.length} files`);

    // ggml headers with the CUDA hook declared, for the hook glue. A tree that already has
    // them is used as it is (no reset of deps/llama.cpp under someone's feet); otherwise the
    // pinned tree is prepared the way the build prepares it.
    let ggmlInclude = path.join(root, "deps", "llama.cpp", "ggml", "include");
    const cudaHeader = path.join(ggmlInclude, "ggml-cuda.h");
    if (!existsSync(cudaHeader) || !readFileSync(cudaHeader, "utf8").includes("ggml_backend_cuda_set_fattn_hook")) {
        try {
            // loaded only now, so a machine without nvcc never needs node-llama-cpp's bundle
            const { prepareLlamaCpp } = await import("./build-native.mjs");
            ggmlInclude = path.join(prepareLlamaCpp(), "ggml", "include");
        } catch (err) {
            console.error(`check:cuda: cannot prepare llama.cpp for the hook glue: ${err instanceof Error ? err.message : err}`);
            return 1;
        }
    }

    const outDir = mkdtempSync(path.join(tmpdir(), "llamafuse-check-cuda-"));
    let failed = 0;
    let spills = 0;
    try {
        for (const file of sources) {
            const f = path.relative(root, file);
            const args = [
                "-std=c++17", "-O3", `-gencode=arch=compute_${arch},code=sm_${arch}`, "-Xptxas", "-v",
                "-I", kernelDir, ...devKernelDirs.flatMap((d) => ["-I", d]), "-I", ggmlInclude,
                "-c", file, "-o", path.join(outDir, path.basename(f) + ".o"),
            ];
            const r = spawnSync(nvcc, args, { encoding: "utf8" });
            const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
            if (r.status !== 0) {
                failed += 1;
                console.log(`FAIL ${f}\n${log}`);
                continue;
            }
            const { text, spillBytes } = summarize(log);
            spills += spillBytes;
            const warnings = log.split("\n").filter((l) => /warning/i.test(l));
            console.log(`ok   ${f}${text ? "\n" + text : " (no kernels)"}`);
            for (const w of warnings) console.log(`  ${w.trim()}`);
        }
    } finally {
        rmSync(outDir, { recursive: true, force: true });
    }
    console.log(`check:cuda: ${sources.length - failed}/${sources.length} compiled; spill bytes (stores + loads, all kernels): ${spills}`);
    if (failed) return 1;
    const emu = process.argv.includes("--no-emu") ? 0 : runEmulator();
    if (emu !== 0) return emu;
    return process.argv.includes("--no-params") ? 0 : runParamsTest();
}

// bench/gpu/ggml/params_test: nvcc for our objects, linked with the addon's static CPU ggml.
function runParamsTest() {
    const ggmlLib = path.join(root, "build", "llama.cpp", "ggml", "src");
    if (!existsSync(path.join(ggmlLib, "libggml-cpu.a"))) {
        console.log("check:cuda: hook translation test skipped: the addon is not built (npm install builds it)");
        return 0;
    }
    const outDir = mkdtempSync(path.join(tmpdir(), "llamafuse-params-"));
    try {
        const make = spawnSync("make", ["-C", path.join(root, "bench", "gpu"), "-j2", `OUT=${outDir}`, `GGML_LIB=${ggmlLib}`,
            `NVCC=${nvcc}`, `ARCH=${arch}`, "params-test"], { encoding: "utf8" });
        if (make.status !== 0) {
            console.log(`FAIL hook translation test build\n${make.stdout ?? ""}${make.stderr ?? ""}`);
            return 1;
        }
        const r = spawnSync(path.join(outDir, "params_test"), [], { encoding: "utf8", timeout: 300_000 });
        const lines = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n");
        for (const l of lines) if (/FAIL/.test(l)) console.log(l);
        console.log(`check:cuda: ${lines[lines.length - 1]}`);
        return r.status === 0 ? 0 : 1;
    } finally {
        rmSync(outDir, { recursive: true, force: true });
    }
}

// The kernels on the CPU emulator (bench/gpu/emu): one g++ compile, then the run.
function runEmulator() {
    const benchDir = path.join(root, "bench", "gpu");
    // the toolkit's include folder as nvcc reports it (nvcc may be a wrapper script)
    const dry = spawnSync(nvcc, ["--dryrun", "-x", "c++", "-c", "/dev/null", "-o", "/dev/null"], { encoding: "utf8" });
    const inc = `${dry.stdout ?? ""}${dry.stderr ?? ""}`.match(/INCLUDES="-I([^"]*)"/);
    if (!inc) {
        console.log("check:cuda: emulator skipped: could not find the CUDA include folder from nvcc --dryrun");
        return 0;
    }
    const outDir = mkdtempSync(path.join(tmpdir(), "llamafuse-emu-"));
    try {
        const exe = path.join(outDir, "emu_test");
        const cxx = process.env.CXX || "g++";
        const args = ["-std=c++20", "-O1", "-pthread", "-DLF_CUDA_EMU", "-I", kernelDir, ...devKernelDirs.flatMap((d) => ["-I", d]), "-I", path.join(benchDir, "emu"),
            "-I", inc[1], "-o", exe, path.join(benchDir, "emu", "emu_test.cpp"), path.join(benchDir, "reference.cpp"),
            path.join(root, "native", "kernels", "attn_reference.cpp")];
        const b = spawnSync(cxx, args, { encoding: "utf8" });
        if (b.status !== 0) {
            console.log(`FAIL emulator build\n${b.stdout ?? ""}${b.stderr ?? ""}`);
            return 1;
        }
        const r = spawnSync(exe, [], { encoding: "utf8", timeout: 900_000 });
        const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
        const lines = out.trim().split("\n");
        for (const l of lines) if (/FAIL/.test(l)) console.log(l);
        console.log(`check:cuda: ${lines[lines.length - 1]} (kernels on the CPU emulator, ${lines.filter((l) => /^\s+ok/.test(l)).length} cases ok)`);
        return r.status === 0 ? 0 : 1;
    } finally {
        rmSync(outDir, { recursive: true, force: true });
    }
}

process.exitCode = await main();
