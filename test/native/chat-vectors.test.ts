// llama.cpp's own expected renderings (tests/test-chat-template.cpp in the pinned tree, read
// from the C++ source): each case's template on the fixed conversation, with the case's
// bos_token/eos_token, must give exactly the expected string of the Jinja path.
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { readLlamaChatVectors, VECTOR_CONVERSATION } from "../helpers/llama-chat-vectors.js";
import { repoRoot, vocabDir } from "../helpers/models.js";

const VECTORS = readLlamaChatVectors(path.join(repoRoot, "deps", "llama.cpp", "tests", "test-chat-template.cpp"));
let model: Model;

beforeAll(async () => {
    model = await loadModel(path.join(vocabDir, "ggml-vocab-llama-spm.gguf"), { vocabOnly: true });
});

afterAll(async () => {
    await model?.dispose();
});

it("reads the test cases (the parser keeps up with the file)", () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(30);
});

it.each(VECTORS.map((v) => [v.name, v] as const))("%s", async (_name, v) => {
    const messages = [...VECTOR_CONVERSATION, ...v.extra];
    // bos_token/eos_token as the case sets them (template variables, like any kwarg).
    const text = await model.applyChatTemplate(messages, { template: v.template, kwargs: { bos_token: v.bos, eos_token: v.eos } });
    expect(text).toBe(v.expected);
});
