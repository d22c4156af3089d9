// tokenizeSync / detokenizeSync (short inputs on the calling thread): the same tokens as
// llama.cpp's own tokenizer test vectors and as the async calls, the same text as
// node-llama-cpp's detokenize; the size limits, a disposed model and bad input as LlamaErrors.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, LlamaError, type Model } from "../../src/index.js";
import { MODELS, vocabDir } from "../helpers/models.js";
import { peer } from "../helpers/peer.js";

/** llama.cpp's tests/test-tokenizer-0 vectors for one vocab file (inputs and expected ids). */
function vectors(vocab: string): { text: string; tokens: number[] }[] {
    const inputs = readFileSync(vocab + ".inp", "utf8").split("\n__ggml_vocab_test__\n");
    if (inputs.at(-1) === "") inputs.pop();
    const outputs = readFileSync(vocab + ".out", "utf8").split("\n");
    if (outputs.at(-1) === "") outputs.pop();
    expect(outputs.length).toBe(inputs.length);
    return inputs.map((text, i) => ({ text, tokens: outputs[i]!.trim() === "" ? [] : outputs[i]!.trim().split(" ").map(Number) }));
}

const vocabs = existsSync(vocabDir)
    ? readdirSync(vocabDir)
          .filter((f) => /^ggml-vocab-(llama-spm|llama-bpe|gpt-2|qwen2)\.gguf$/.test(f) && existsSync(path.join(vocabDir, f + ".inp")))
          .map((f) => path.join(vocabDir, f))
    : [];
if (vocabs.length === 0) console.warn(`tokenize-sync vector tests SKIPPED: no llama.cpp vocab test files in ${vocabDir}`);

describe.each(vocabs.map((v) => [path.basename(v, ".gguf"), v] as const))("%s", (_name, file) => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(file, { vocabOnly: true });
    });
    afterAll(async () => {
        await model?.dispose();
    });

    it("tokenizeSync gives llama.cpp's expected ids and the async call's", async () => {
        const cases = vectors(file).filter((c) => Buffer.byteLength(c.text) <= 4096);
        expect(cases.length).toBeGreaterThan(10);
        for (const c of cases) {
            const sync = Array.from(model.tokenizeSync(c.text, { addSpecial: false }));
            expect(sync, JSON.stringify(c.text)).toEqual(c.tokens);
            expect(sync).toEqual(Array.from(await model.tokenize(c.text, { addSpecial: false })));
        }
    });

    it("detokenizeSync gives node-llama-cpp's text and the async call's", async () => {
        const llama = await peer();
        const theirs = await llama.loadModel({ modelPath: file, vocabOnly: true });
        try {
            for (const c of vectors(file).filter((v) => v.tokens.length > 0 && v.tokens.length <= 1024)) {
                const sync = model.detokenizeSync(c.tokens);
                expect(sync).toBe(await model.detokenize(c.tokens));
                expect(sync, JSON.stringify(c.text)).toBe(theirs.detokenize(c.tokens as never));
            }
        } finally {
            await theirs.dispose();
        }
    });
});

describe.runIf(existsSync(MODELS.stories260K))("tokenizeSync / detokenizeSync limits and errors", () => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
    });
    afterAll(async () => {
        await model?.dispose();
    });

    const code = (fn: () => unknown): string | undefined => {
        try {
            fn();
        } catch (err) {
            expect(err).toBeInstanceOf(LlamaError);
            return (err as LlamaError).code;
        }
        return undefined;
    };

    it("adds BOS by default, as tokenize() does", async () => {
        const sync = model.tokenizeSync("Once upon a time");
        expect(sync[0]).toBe(model.info.bos);
        expect(Array.from(sync)).toEqual(Array.from(await model.tokenize("Once upon a time")));
        expect(model.detokenizeSync(sync, { removeSpecial: true })).toBe(await model.detokenize(sync, { removeSpecial: true }));
    });

    it("takes up to 4096 UTF-8 bytes and 1024 tokens, and says to use the async call beyond", () => {
        expect(model.tokenizeSync("a".repeat(4096), { addSpecial: false }).length).toBeGreaterThan(0);
        expect(code(() => model.tokenizeSync("a".repeat(4097)))).toBe("ERR_INVALID_OPTION");
        expect(code(() => model.tokenizeSync("é".repeat(2049)))).toBe("ERR_INVALID_OPTION"); // 4098 bytes, 2049 chars
        expect(model.detokenizeSync(new Array(1024).fill(model.info.bos + 100)).length).toBeGreaterThan(0);
        expect(code(() => model.detokenizeSync(new Array(1025).fill(1)))).toBe("ERR_INVALID_OPTION");
    });

    it("rejects bad input as the async calls do", () => {
        expect(code(() => model.tokenizeSync(42 as never))).toBe("ERR_INVALID_OPTION");
        expect(code(() => model.tokenizeSync("x", { addSpecial: "yes" } as never))).toBe("ERR_INVALID_OPTION");
        expect(code(() => model.tokenizeSync("x", { nope: true } as never))).toBe("ERR_INVALID_OPTION");
        expect(code(() => model.detokenizeSync([model.info.vocabSize]))).toBe("ERR_INVALID_TOKEN");
        expect(code(() => model.detokenizeSync([-1]))).toBe("ERR_INVALID_TOKEN");
    });

    it("throws ERR_DISPOSED after dispose", async () => {
        const m = await loadModel(MODELS.stories260K, { vocabOnly: true });
        await m.dispose();
        expect(code(() => m.tokenizeSync("x"))).toBe("ERR_DISPOSED");
        expect(code(() => m.detokenizeSync([1]))).toBe("ERR_DISPOSED");
    });
});
