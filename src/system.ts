import { readFileSync } from "node:fs";
import path from "node:path";
import { binding, loadedAddonPath, packageRoot } from "./binding.js";

/**
 * The llama.cpp commit this build is pinned to, from llama.cpp.json at the package root: the one
 * file that names it (the native build, bench/gpu/prepare.sh and this module all read it).
 */
export const LLAMA_CPP_COMMIT: string = JSON.parse(readFileSync(path.join(packageRoot, "llama.cpp.json"), "utf8")).commit;

/** llama.cpp's system info line (CPU features the build uses). */
export function systemInfo(): string {
    return binding().systemInfo();
}

export interface AddonInfo {
    /** The addon file loaded. */
    path: string;
    /** "prebuilt": one of the package's prebuilt levels; "source": built on this machine. */
    build: "prebuilt" | "source";
    /** The prebuilt's instruction-set level (sapphirerapids, icelake, haswell, x64), if prebuilt. */
    variant: string | null;
    /** Whether the development-only attention bindings are built in (never in published addons). */
    devBindings: boolean;
}

/** Which native addon this process runs (loads it if not loaded yet). */
export function addonInfo(): AddonInfo {
    const b = binding();
    const file = loadedAddonPath ?? "";
    const prebuilt = /[\\/]prebuilds[\\/][^\\/]+[\\/]llamafuse-([^\\/]+)\.node$/.exec(file);
    return { path: file, build: prebuilt ? "prebuilt" : "source", variant: prebuilt ? prebuilt[1]! : null, devBindings: b.devBindings === true };
}
