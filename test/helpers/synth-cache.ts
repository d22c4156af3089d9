// Synthetic models for tests, written once into .cache/test-models (git-ignored) and
// reused: a file is keyed by its options, so a change of shape writes a new one.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { synthModel, type SynthOptions } from "../../src/synth/index.js";
import { repoRoot } from "./models.js";

export async function cachedSynthModel(options: Omit<SynthOptions, "output">): Promise<string> {
    const key = createHash("sha256").update(JSON.stringify(options)).digest("hex").slice(0, 16);
    const dir = path.join(repoRoot, ".cache", "test-models");
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `synth-${key}.gguf`);
    if (!existsSync(file)) await synthModel({ ...options, output: file });
    return file;
}
