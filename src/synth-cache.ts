// Synthetic models written once and reused: the demo's default model and the benchmarks'
// shapes. A file is named by a hash of its options, so a change of shape writes a new one.
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { packageRoot } from "./binding.js";
import { LlamaError } from "./errors.js";
import { synthModel, type SynthOptions } from "./synth/index.js";

/**
 * A writable cache folder: `explicit`, $LLAMAFUSE_CACHE_DIR, the package's .cache/ (a
 * checkout), or the user's cache folder (an installed package may be read-only).
 */
export function cacheDir(explicit?: string): string {
    const candidates = [
        explicit,
        process.env.LLAMAFUSE_CACHE_DIR,
        path.join(packageRoot, ".cache"),
        path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "llamafuse"),
    ].filter((d): d is string => !!d);
    for (const dir of candidates) {
        try {
            mkdirSync(dir, { recursive: true });
            accessSync(dir, constants.W_OK);
            return dir;
        } catch {
            // not writable: try the next one
        }
    }
    throw new LlamaError("ERR_FILE_NOT_FOUND", `no writable cache folder (tried ${candidates.join(", ")})`);
}

export interface CachedSynthOptions {
    dir?: string;
    /** Base of the file name (a hash of the options is appended). */
    name?: string;
    onProgress?: (fraction: number) => void;
    /** Called before writing a new file (not when the cached one is reused). */
    onWrite?: (file: string) => void;
}

/** The synthetic model for `options`, written on first use. */
export async function cachedSynthModel(options: Omit<SynthOptions, "output" | "onProgress" | "signal">, o: CachedSynthOptions = {}): Promise<string> {
    const key = createHash("sha256").update(JSON.stringify(options)).digest("hex").slice(0, 12);
    const file = path.join(cacheDir(o.dir), `${o.name ?? "synth"}-${key}.gguf`);
    if (existsSync(file)) return file;
    o.onWrite?.(file);
    await synthModel({ ...options, output: file, onProgress: o.onProgress });
    return file;
}
