// Which native addon to load. In order: $LLAMAFUSE_ADDON; a source build (build/Release, what a
// development checkout and an install that fell back to building from source have); else the
// prebuilt addon for this CPU: prebuilds/<platform>-<arch>/manifest.json lists one addon per
// instruction-set level, best first, each with the /proc/cpuinfo flags it needs
// (scripts/build-prebuilt.mjs), and the first level this CPU has is loaded. Chosen at load, not at
// install, so a node_modules copied to another machine still loads the right one.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { LlamaError } from "./errors.js";

export interface PrebuiltVariant {
    name: string;
    file: string;
    cpuFlags: string[];
}

interface PrebuiltManifest {
    platform: string;
    variants: PrebuiltVariant[];
}

/** The CPU's feature flags as Linux reports them (which also means the OS enabled them). */
export function cpuinfoFlags(cpuinfo = readCpuinfo()): Set<string> {
    const line = cpuinfo.split("\n").find((l) => /^flags\s*:/.test(l));
    return new Set(line ? line.replace(/^flags\s*:\s*/, "").trim().split(/\s+/) : []);
}

function readCpuinfo(): string {
    try {
        return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
        return "";
    }
}

/** Prebuilt addons are linked against glibc; on musl (Alpine) only a source build runs. */
function isGlibc(): boolean {
    if (process.platform !== "linux") return false;
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return typeof header?.glibcVersionRuntime === "string";
}

function readManifest(dir: string): PrebuiltManifest | undefined {
    const file = path.join(dir, "manifest.json");
    if (!existsSync(file)) return undefined;
    return JSON.parse(readFileSync(file, "utf8")) as PrebuiltManifest;
}

/**
 * The prebuilt addon for this CPU, or undefined when the package has none for this platform.
 * $LLAMAFUSE_CPU_VARIANT names a level to load instead (tests compare levels; it is loaded even
 * where the CPU lacks it, which then fails with an illegal instruction).
 */
export function prebuiltAddon(root: string, flags?: Set<string>): { path: string; variant: string } | undefined {
    const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
    const manifest = readManifest(dir);
    if (!manifest || manifest.variants.length === 0 || !isGlibc()) return undefined;
    const forced = process.env.LLAMAFUSE_CPU_VARIANT;
    let chosen: PrebuiltVariant | undefined;
    if (forced) {
        chosen = manifest.variants.find((v) => v.name === forced);
        if (!chosen) {
            throw new LlamaError(
                "ERR_ADDON_LOAD",
                `LLAMAFUSE_CPU_VARIANT=${forced}: no such prebuilt level (${manifest.variants.map((v) => v.name).join(", ")})`,
            );
        }
    } else {
        const have = flags ?? cpuinfoFlags();
        chosen = manifest.variants.find((v) => v.cpuFlags.every((f) => have.has(f)));
    }
    return chosen && { path: path.join(dir, chosen.file), variant: chosen.name };
}

/** Addon files to try, in order (the first that exists is loaded). */
export function addonCandidates(root: string): string[] {
    const prebuilt = process.env.LLAMAFUSE_ADDON ? undefined : prebuiltAddon(root);
    return [process.env.LLAMAFUSE_ADDON, path.join(root, "build", "Release", "llamafuse.node"), prebuilt?.path].filter(
        (p): p is string => !!p,
    );
}
