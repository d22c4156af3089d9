// Where tests find their data: the small real models in ../shared/models (never committed)
// and llama.cpp's vocab test vectors in the prepared source tree.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const modelsDir = process.env.LLAMAFUSE_TEST_MODELS ?? path.resolve(repoRoot, "..", "shared", "models");
export const vocabDir = path.join(repoRoot, "deps", "llama.cpp", "models");

export const MODELS = {
    stories260K: path.join(modelsDir, "stories260K.gguf"),
    tiny656K: path.join(modelsDir, "TinyStories-656K-Q8_0.gguf"),
    tinyRandom: path.join(modelsDir, "llama-2-tiny-random.gguf"),
};

export function haveModels(): boolean {
    return Object.values(MODELS).every((p) => existsSync(p));
}
