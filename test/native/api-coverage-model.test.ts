// Model-level API that had no test: detokenizeBytes, isEndOfGeneration, removeSpecial with
// unparseSpecial, useMlock, and what a vocabOnly model refuses. The references are
// node-llama-cpp 3.21.1 (same llama.cpp commit) and UTF-8 itself.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";
import { peer } from "../helpers/peer.js";

const TEXTS = ["Ünïcödé 東京 🙂 and 🧪", "plain ascii, with  two spaces", "日本語のテキスト", "e\u0301 ﬁ 𝔸"];

describe("detokenizeBytes", () => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(MODELS.tinyRandom, { vocabOnly: true }); // Llama-2 vocabulary: byte-fallback tokens
    });
    afterAll(() => model?.dispose());

    it("gives back the exact UTF-8 bytes, and every token prefix gives a byte prefix (split characters stay raw)", async () => {
        let splitSeen = 0;
        for (const text of TEXTS) {
            const bytes = Buffer.from(text, "utf8");
            const tokens = await model.tokenize(text, { addSpecial: false });
            expect(Buffer.from(await model.detokenizeBytes(tokens)).equals(bytes), text).toBe(true);
            for (let n = 1; n < tokens.length; n++) {
                const part = Buffer.from(await model.detokenizeBytes(tokens.subarray(0, n)));
                expect(bytes.subarray(0, part.length).equals(part), `${text}: first ${n} tokens`).toBe(true);
                // where a character is cut, the string form can only say U+FFFD; the bytes are exact
                if (!Buffer.from(part.toString("utf8"), "utf8").equals(part)) {
                    splitSeen++;
                    expect(await model.detokenize(tokens.subarray(0, n))).toContain("\uFFFD");
                }
            }
        }
        expect(splitSeen).toBeGreaterThan(0); // the byte-fallback tokens really split characters here
    });
});

describe("special tokens", () => {
    let model: Model;
    let ref: Awaited<ReturnType<Awaited<ReturnType<typeof peer>>["loadModel"]>>;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ref = await (await peer()).loadModel({ modelPath: MODELS.stories260K, vocabOnly: true });
    });
    afterAll(async () => {
        await model?.dispose();
        await ref?.dispose();
    });

    it("isEndOfGeneration agrees with node-llama-cpp on every token", () => {
        const eog: number[] = [];
        for (let t = 0; t < model.info.vocabSize; t++) {
            expect(model.isEndOfGeneration(t), `token ${t}`).toBe(ref.isEogToken(t as never));
            if (model.isEndOfGeneration(t)) eog.push(t);
        }
        expect(eog).toContain(model.info.eos);
        expect(eog).not.toContain(model.info.bos);
    });

    it("unparseSpecial renders BOS/EOS as node-llama-cpp does; removeSpecial drops the leading BOS", async () => {
        const { bos, eos } = model.info;
        const body = Array.from(await model.tokenize("Once upon a time", { addSpecial: false }));
        const tokens = [bos, ...body, eos];
        for (const unparseSpecial of [false, true]) {
            expect(await model.detokenize(tokens, { unparseSpecial }), `unparseSpecial ${unparseSpecial}`).toBe(ref.detokenize(tokens as never, unparseSpecial));
        }
        const shown = await model.detokenize(tokens, { unparseSpecial: true });
        expect(shown.startsWith("<s>")).toBe(true);
        expect(shown.endsWith("</s>")).toBe(true);
        // llama.cpp removes the BOS the vocab adds (add_bos) and an EOS only where it adds one (not here)
        const removed = await model.detokenize(tokens, { unparseSpecial: true, removeSpecial: true });
        expect(removed).toBe(shown.slice("<s>".length));
        // without unparseSpecial BOS renders as nothing either way; the word's leading space stays
        // (llama.cpp strips it only from a first token that is not a removed BOS)
        expect(await model.detokenize(tokens, { removeSpecial: true })).toBe(" Once upon a time");
        expect(await model.detokenize(tokens.slice(1))).toBe("Once upon a time");
        await expect(model.detokenize(tokens, { removeSpecial: "yes" as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    });
});

describe("load options", () => {
    it("useMlock: loads and computes the same logits, bit for bit", async () => {
        const logits = async (options: { useMlock?: boolean }) => {
            const model = await loadModel(MODELS.stories260K, options);
            try {
                const ctx = await model.createContext({ contextSize: 256, threads: 1 });
                return (await ctx.forward({ sequence: 0, tokens: [1, 403, 407, 300] })).logits(0);
            } finally {
                await model.dispose();
            }
        };
        expect(await logits({ useMlock: true })).toEqual(await logits({}));
        await expect(loadModel(MODELS.stories260K, { useMlock: 1 as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    });

    it("a vocabOnly model tokenizes but refuses a context with ERR_UNSUPPORTED", async () => {
        const model = await loadModel(MODELS.stories260K, { vocabOnly: true });
        try {
            expect(Array.from(await model.tokenize("Once upon a time"))).toEqual(Array.from(await (async () => {
                const full = await loadModel(MODELS.stories260K);
                try {
                    return await full.tokenize("Once upon a time");
                } finally {
                    await full.dispose();
                }
            })()));
            await expect(model.createContext({ contextSize: 256 })).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
        } finally {
            await model.dispose();
        }
    });
});
