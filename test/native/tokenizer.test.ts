// Tokenizer conformance: llama.cpp's own test vectors (the same check as its
// test-tokenizer-0: add_special off, exact token equality), detokenization equal to
// node-llama-cpp's on the same vocab files, and hard strings against node-llama-cpp.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { MODELS, vocabDir } from "../helpers/models.js";
import { peer } from "../helpers/peer.js";

function readVectors(vocab: string): { text: string; tokens: number[] }[] {
    const raw = readFileSync(vocab + ".inp", "utf8");
    const sep = "\n__ggml_vocab_test__\n";
    const inputs: string[] = [];
    // The same splitting as test-tokenizer-0.cpp: no empty case after a trailing separator.
    let pos = 0;
    while (pos < raw.length) {
        const next = raw.indexOf(sep, pos);
        if (next < 0) {
            inputs.push(raw.slice(pos));
            break;
        }
        inputs.push(raw.slice(pos, next));
        pos = next + sep.length;
    }
    const outputs = readFileSync(vocab + ".out", "utf8").split("\n");
    if (outputs.at(-1) === "") outputs.pop();
    expect(outputs.length).toBe(inputs.length);
    return inputs.map((text, i) => ({
        text,
        tokens: outputs[i]!.trim() === "" ? [] : outputs[i]!.trim().split(" ").map(Number),
    }));
}

const vocabs = existsSync(vocabDir)
    ? readdirSync(vocabDir)
          .filter((f) => f.startsWith("ggml-vocab-") && f.endsWith(".gguf") && existsSync(path.join(vocabDir, f + ".inp")))
          .map((f) => path.join(vocabDir, f))
    : [];

describe("llama.cpp tokenizer test vectors", () => {
    it("found the vectors in the pinned tree", () => {
        expect(vocabs.length).toBeGreaterThanOrEqual(10);
    });

    for (const vocab of vocabs) {
        it(path.basename(vocab), async () => {
            const cases = readVectors(vocab);
            expect(cases.length).toBeGreaterThan(10);
            const model = await loadModel(vocab, { vocabOnly: true });
            const llama = await peer();
            const ref = await llama.loadModel({ modelPath: vocab, vocabOnly: true });
            try {
                for (const c of cases) {
                    const got = await model.tokenize(c.text, { addSpecial: false, parseSpecial: false });
                    expect(Array.from(got), JSON.stringify(c.text)).toEqual(c.tokens);
                    // Detokenization: byte-equal to node-llama-cpp (same llama.cpp) on the same ids.
                    const text = await model.detokenize(c.tokens);
                    expect(text, JSON.stringify(c.text)).toBe(ref.detokenize(c.tokens as never));
                }
            } finally {
                await model.dispose();
                await ref.dispose();
            }
        });
    }
});

const HARD = [
    "",
    " ",
    "Hello world",
    "  leading and trailing  ",
    "日本語のテキストと中文文本，还有한국어",
    "emoji 🦙🚀 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽",
    "combining: e\u0301 a\u0308 n\u0303 — precomposed: é ä ñ; zalgo Z̵̡̢̛̗̘̙͉͍͎a̸l̴g̶o",
    "nul\u0000byte and \u0001 control \u007f",
    "tabs\tand\nnewlines\r\n\n\n",
    "<s> </s> <|eot_id|> [INST] special-looking text",
    "math ∑∫√∞ ≠ ≤ ≥ and RTL עברית العربية",
    "x".repeat(5000),
    "The quick brown fox jumps over the lazy dog. ".repeat(200),
];

describe("tokenization equals node-llama-cpp's on hard strings", () => {
    // Each file must be there (../shared/models, the prepared llama.cpp tree): a missing one fails.
    const files = [MODELS.tinyRandom, path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), path.join(vocabDir, "ggml-vocab-qwen2.gguf")];
    const opened: Model[] = [];
    afterAll(async () => {
        await Promise.all(opened.map((m) => m.dispose()));
    });

    for (const file of files) {
        it(path.basename(file), async () => {
            expect(existsSync(file), `${file} is missing`).toBe(true);
            const model = await loadModel(file, { vocabOnly: true });
            opened.push(model);
            const ref = await (await peer()).loadModel({ modelPath: file, vocabOnly: true });
            try {
                for (const text of HARD) {
                    for (const special of [false, true]) {
                        const ours = await model.tokenize(text, { addSpecial: false, parseSpecial: special });
                        expect(Array.from(ours), `${JSON.stringify(text.slice(0, 40))} special=${special}`).toEqual(Array.from(ref.tokenize(text, special)));
                    }
                    const ids = await model.tokenize(text, { addSpecial: false });
                    expect(await model.detokenize(ids)).toBe(ref.detokenize(Array.from(ids) as never));
                }
            } finally {
                await ref.dispose();
            }
        });
    }

    it("round-trips arbitrary Unicode through a byte-level BPE vocabulary exactly", async () => {
        const model = await loadModel(path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), { vocabOnly: true });
        opened.push(model);
        for (const text of HARD) {
            const ids = await model.tokenize(text, { addSpecial: false });
            expect(await model.detokenize(ids)).toBe(text);
        }
    });

    it("adds BOS only when asked (addSpecial) and parses special tokens only when asked", async () => {
        const model = await loadModel(MODELS.stories260K);
        opened.push(model);
        expect(Array.from(await model.tokenize("Once upon a time"))).toEqual([1, 403, 407, 261, 378]);
        expect(Array.from(await model.tokenize("Once upon a time", { addSpecial: false }))).toEqual([403, 407, 261, 378]);
        const bpe = await loadModel(path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), { vocabOnly: true });
        opened.push(bpe);
        const eot = await bpe.tokenize("<|eot_id|>", { addSpecial: false, parseSpecial: true });
        expect(eot.length).toBe(1);
        expect(bpe.info.eot).toBe(eot[0]);
        expect((await bpe.tokenize("<|eot_id|>", { addSpecial: false, parseSpecial: false })).length).toBeGreaterThan(1);
        expect(await bpe.detokenize(eot, { unparseSpecial: true })).toBe("<|eot_id|>");
        expect(await bpe.detokenize(eot, { unparseSpecial: false })).toBe("");
    });
});
