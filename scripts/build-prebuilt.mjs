#!/usr/bin/env node
// Builds the prebuilt addons for this platform (linux-x64): one per instruction-set level of
// scripts/cpu-variants.mjs, into prebuilds/linux-x64/llamafuse-<level>.node, plus manifest.json,
// from which the runtime picks the best level the CPU has (src/prebuilt.ts). Built without the
// development-only bindings, without CUDA, and without -march=native for our own code (its
// attention kernels choose AVX2 at run time).
//
// One build folder (build-prebuilt/) serves every level: only ggml's CPU backend differs between
// them, so after the first level ninja recompiles those files alone and relinks.
//
// Usage: node scripts/build-prebuilt.mjs [level ...]    (default: every level of this platform)
// Run by whoever publishes (before npm pack); npm install then needs no compiler on these CPUs.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildAddon, LLAMA_CPP_COMMIT, llamaCppSource, patchesDigest } from "./build-native.mjs";
import { CPU_VARIANTS, cpuinfoFlags } from "./cpu-variants.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const platformKey = `${process.platform}-${process.arch}`;
export const prebuildDir = path.join(root, "prebuilds", platformKey);

/** The highest GLIBC_x.y symbol version a binary needs (what the oldest system it runs on has). */
function glibcNeeded(file) {
    try {
        const out = execFileSync("objdump", ["-T", file], { encoding: "utf8", maxBuffer: 64 << 20 });
        const versions = [...out.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
        versions.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        const v = versions.at(-1);
        return v ? `${v[0]}.${v[1]}` : null;
    } catch {
        return null; // no binutils: the install's smoke check still catches a glibc too old
    }
}

function main() {
    const levels = CPU_VARIANTS[platformKey];
    if (!levels) throw new Error(`llamafuse: no prebuilt levels for ${platformKey} (source builds only)`);
    const wanted = process.argv.slice(2);
    for (const w of wanted) {
        if (!levels.some((l) => l.name === w)) throw new Error(`llamafuse: unknown level ${w} (${levels.map((l) => l.name).join(", ")})`);
    }
    const source = llamaCppSource();
    mkdirSync(prebuildDir, { recursive: true });
    for (const level of levels) {
        if (wanted.length && !wanted.includes(level.name)) continue;
        console.log(`llamafuse: building the prebuilt addon for ${level.name} (${level.features.join(" ") || "baseline x86-64"})`);
        const built = buildAddon({
            source,
            outDir: path.join(root, "build-prebuilt"),
            defs: [
                "--CDLLAMAFUSE_PORTABLE=OFF",
                "--CDLLAMAFUSE_CUDA=OFF",
                "--CDLLAMAFUSE_LLAMA_TOOLS=OFF",
                "--CDLLAMAFUSE_DEV_BINDINGS=OFF",
                `--CDLLAMAFUSE_CPU_VARIANT=${level.name}`,
                // cmake-js drops empty -D values (a stale one would stay in the cache): "none"
                `--CDLLAMAFUSE_CPU_VARIANT_FEATURES=${level.features.join(",") || "none"}`,
            ],
        });
        const dest = path.join(prebuildDir, `llamafuse-${level.name}.node`);
        // written beside and renamed over: a process that has the old file loaded keeps its copy
        const tmp = `${dest}.tmp`;
        copyFileSync(built, tmp);
        try {
            execFileSync("strip", ["--strip-unneeded", tmp]); // symbol tables only; the dynamic ones stay
        } catch {
            console.log("llamafuse: strip not found, the prebuilt keeps its symbol tables");
        }
        renameSync(tmp, dest);
        console.log(`llamafuse: ${path.relative(root, dest)} (${(statSync(dest).size / 1e6).toFixed(1)} MB)`);
    }
    // The manifest lists every level present (built now or before), best first.
    const variants = levels
        .filter((l) => existsSync(path.join(prebuildDir, `llamafuse-${l.name}.node`)))
        .map((l) => {
            const file = `llamafuse-${l.name}.node`;
            return { name: l.name, file, cpuFlags: cpuinfoFlags(l.features), glibc: glibcNeeded(path.join(prebuildDir, file)) };
        });
    const manifest = { platform: platformKey, llamaCppCommit: LLAMA_CPP_COMMIT, patchesDigest: patchesDigest(), variants };
    writeFileSync(path.join(prebuildDir, "manifest.json"), JSON.stringify(manifest, null, 4) + "\n");
    console.log(`llamafuse: ${path.relative(root, prebuildDir)}/manifest.json: ${variants.map((v) => v.name).join(", ")}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    try {
        main();
    } catch (err) {
        console.error(err instanceof Error ? err.message : err);
        process.exit(1);
    }
}
