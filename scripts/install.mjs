#!/usr/bin/env node
// npm install's step for llamafuse (package.json "install"):
//   - a development checkout (git clone): builds the addon from source (scripts/build-native.mjs);
//   - a published package: uses the prebuilt addon for this platform and CPU when one is here and
//     passes a smoke check in a child process (it loads, and llama.cpp initialises), otherwise
//     builds from the vendored llama.cpp source and keeps only the addon (not the build tree).
// LLAMAFUSE_BUILD_FROM_SOURCE=1 forces the source build; so does LLAMAFUSE_CUDA=1 (CUDA builds
// are source builds only), and so does LLAMAFUSE_PORTABLE=1.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildAddon, dropBuildTree, flag, isVendored } from "./build-native.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const log = (msg) => console.log(`llamafuse: ${msg}`);

/**
 * Loads the package as an application would (dist/index.js: the same addon selection) in a child
 * process, so that a crash (a missing glibc symbol, an illegal instruction) cannot take the
 * install down with it. Returns null when it passes, else why not.
 */
function smokeCheck() {
    const index = path.join(root, "dist", "index.js");
    if (!existsSync(index)) return "dist/index.js is missing";
    const script = `
        const m = await import(${JSON.stringify(pathToFileURL(index).href)});
        const info = m.systemInfo();
        if (!/CPU/.test(info)) throw new Error("unexpected system info: " + info);
        const addon = m.addonInfo();
        if (addon.build !== "prebuilt") throw new Error("loaded " + addon.path + ", not a prebuilt addon");
        console.log(addon.path);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        encoding: "utf8",
        env: { ...process.env, LLAMAFUSE_ADDON: "" },
        timeout: 60_000,
    });
    if (r.status === 0) return { ok: r.stdout.trim().split("\n").at(-1) };
    return (r.stderr || r.stdout || `exit ${r.status ?? r.signal}`).trim().split("\n").slice(-3).join(" | ");
}

function main() {
    if (!isVendored()) {
        buildAddon(); // development checkout
        return;
    }
    const platform = `${process.platform}-${process.arch}`;
    const why = flag("LLAMAFUSE_BUILD_FROM_SOURCE")
        ? "LLAMAFUSE_BUILD_FROM_SOURCE is set"
        : flag("LLAMAFUSE_CUDA")
          ? "CUDA builds are source builds"
          : flag("LLAMAFUSE_PORTABLE")
            ? "LLAMAFUSE_PORTABLE is set"
            : !existsSync(path.join(root, "prebuilds", platform, "manifest.json"))
              ? `no prebuilt addon for ${platform}`
              : null;
    if (!why) {
        // a source build left by an earlier install would be loaded before the prebuilt one
        rmSync(path.join(root, "build"), { recursive: true, force: true });
        const result = smokeCheck();
        if (typeof result === "object") {
            log(`using the prebuilt addon ${path.relative(root, result.ok)}`);
            return;
        }
        log(`no usable prebuilt addon (${result}); building from source`);
    } else {
        log(`${why}; building from source`);
    }
    buildAddon();
    dropBuildTree();
}

try {
    main();
} catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
}
