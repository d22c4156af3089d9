// Packing llamafuse as npm publishes it and installing the tarball into an empty project, for
// test/pack/*.test.ts. No network beyond the npm registry, and npm's cache first.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../helpers/models.js";

export const platformKey = `${process.platform}-${process.arch}`;
export const repoPrebuilds = path.join(repoRoot, "prebuilds", platformKey);
export const devAddon = path.join(repoRoot, "build", "Release", "llamafuse.node");

export interface PrebuiltManifest {
    platform: string;
    variants: { name: string; file: string; cpuFlags: string[] }[];
}

/** The repository's prebuilt addons (npm run build:prebuilt made them), if any. */
export function repoManifest(): PrebuiltManifest | null {
    const file = path.join(repoPrebuilds, "manifest.json");
    return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as PrebuiltManifest) : null;
}

/**
 * The environment for npm and the installed package: this run's npm lifecycle variables and
 * llamafuse's own switches removed (they would leak `npm test`'s context into the install).
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const keep = new Set(["npm_config_cache", "npm_config_registry", "npm_config_userconfig"]);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (k.startsWith("LLAMAFUSE_") && k !== "LLAMAFUSE_TEST_MODELS") continue;
        if (k.toLowerCase().startsWith("npm_") && !keep.has(k.toLowerCase())) continue;
        if (k === "NODE_OPTIONS" || k === "VITEST" || k.startsWith("VITEST_")) continue;
        env[k] = v;
    }
    return { ...env, ...extra };
}

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv()): string {
    return execFileSync("npm", args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
}

export interface Packed {
    tarball: string;
    /** "prebuilt": the repository's prebuilds/; "dev-build": build/Release standing in for them. */
    prebuiltSource: "prebuilt" | "dev-build";
    tarballBytes: number;
}

/**
 * Packs the package as `npm pack` would, without touching the checkout: the files npm would
 * include are copied to `dir`/pkg, scripts/prepack.mjs vendors llama.cpp there (from this
 * checkout's prepared deps/llama.cpp), and the prebuilt addons are the repository's
 * prebuilds/ when it has them; otherwise the development build stands in as a single level
 * (CI does not compile four addons; what is tested is the install path, not the compiler).
 */
export function packInto(dir: string): Packed {
    const pkg = path.join(dir, "pkg");
    mkdirSync(pkg, { recursive: true });
    const listing = JSON.parse(npm(["pack", "--dry-run", "--json", "--ignore-scripts"], repoRoot)) as { files: { path: string }[] }[];
    for (const { path: rel } of listing[0]!.files) {
        if (rel.startsWith("vendor/") || rel.startsWith("prebuilds/")) continue; // staged below
        mkdirSync(path.dirname(path.join(pkg, rel)), { recursive: true });
        cpSync(path.join(repoRoot, rel), path.join(pkg, rel));
    }
    symlinkSync(path.join(repoRoot, "deps"), path.join(pkg, "deps"));
    execFileSync(process.execPath, [path.join(pkg, "scripts", "prepack.mjs")], { cwd: pkg, stdio: "pipe" });
    rmSync(path.join(pkg, "deps"));

    const dest = path.join(pkg, "prebuilds", platformKey);
    let prebuiltSource: Packed["prebuiltSource"];
    if (repoManifest()) {
        cpSync(repoPrebuilds, dest, { recursive: true });
        prebuiltSource = "prebuilt";
    } else {
        mkdirSync(dest, { recursive: true });
        cpSync(devAddon, path.join(dest, "llamafuse-dev-build.node"));
        const manifest: PrebuiltManifest = { platform: platformKey, variants: [{ name: "dev-build", file: "llamafuse-dev-build.node", cpuFlags: [] }] };
        writeFileSync(path.join(dest, "manifest.json"), JSON.stringify(manifest));
        prebuiltSource = "dev-build";
    }
    // scripts ran above (prepack) or are not wanted (prepare: dist/ is copied as built)
    const out = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", dir], pkg)) as { filename: string; size: number }[];
    return { tarball: path.join(dir, out[0]!.filename), prebuiltSource, tarballBytes: out[0]!.size };
}

export interface Installed {
    app: string;
    seconds: number;
    log: string;
}

/** npm install of the tarball into an empty ESM project at `dir`/app. */
export function installInto(dir: string, tarball: string, env: NodeJS.ProcessEnv = cleanEnv()): Installed {
    const app = path.join(dir, "app");
    mkdirSync(app, { recursive: true });
    writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "llamafuse-pack-test-app", private: true, type: "module" }));
    const t0 = performance.now();
    const r = spawnSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--foreground-scripts", tarball], {
        cwd: app,
        env,
        encoding: "utf8",
        maxBuffer: 64 << 20,
    });
    const seconds = (performance.now() - t0) / 1000;
    const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    if (r.status !== 0) throw new Error(`npm install failed (${r.status}):\n${log.slice(-4000)}`);
    return { app, seconds, log };
}

/** Bytes on disk under `dir` (files and symlinks themselves, as du --apparent-size). */
export function treeBytes(dir: string): number {
    let total = 0;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) total += treeBytes(p);
        else total += lstatSync(p).size;
    }
    return total;
}

/** Every folder named node-llama-cpp or @node-llama-cpp under `dir`, at any depth. */
export function findNamed(dir: string, names: string[]): string[] {
    const found: string[] = [];
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        const p = path.join(dir, entry.name);
        if (names.includes(entry.name)) found.push(p);
        found.push(...findNamed(p, names));
    }
    return found;
}

export interface Generated {
    tokens: number[];
    text: string;
    addon: { path: string; build: string; variant: string | null; devBindings: boolean };
}

/**
 * Runs test/pack/generate-child.mjs copied into `cwd`, so that the bare name "llamafuse"
 * resolves to the package installed there (or pass a file URL as `entry`).
 */
export function runGenerate(cwd: string, entry: string, model: string, env: NodeJS.ProcessEnv = cleanEnv()): Generated {
    const child = path.join(cwd, "generate-child.mjs");
    cpSync(path.join(repoRoot, "test", "pack", "generate-child.mjs"), child);
    const r = spawnSync(process.execPath, [child, entry, model], { cwd, env, encoding: "utf8", timeout: 120_000 });
    if (r.status !== 0) throw new Error(`generation failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}
