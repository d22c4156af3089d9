// model.info against the GGUF headers, read independently by node-llama-cpp's GGUF reader.
import { describe, expect, it } from "vitest";
import { readGgufFileInfo } from "node-llama-cpp";
import { loadModel } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

// node-llama-cpp nests metadata ("llama.block_count" → metadata.llama.block_count); flatten it.
function flatten(obj: Record<string, unknown>, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
    for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (v !== null && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v)) flatten(v as Record<string, unknown>, key, out);
        else out[key] = v;
    }
    return out;
}

// llama.cpp's vocabulary type for each tokenizer.ggml.model (llama-vocab.cpp, LLAMA_VOCAB_TYPE_*).
const VOCAB_TYPE: Record<string, string> = { llama: "spm", gpt2: "bpe", bert: "wpm", t5: "ugm", rwkv: "rwkv", plamo2: "plamo2", "no_vocab": "none" };

function plain(v: unknown): unknown {
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number | bigint>, (x) => (typeof x === "bigint" ? Number(x) : x));
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === "bigint") return Number(v);
    return v;
}

describe("model.info matches the GGUF header", () => {
    for (const [name, file] of Object.entries(MODELS)) {
        it(name, async () => {
            const ref = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
            const meta = flatten(ref.metadata as unknown as Record<string, unknown>);
            const model = await loadModel(file);
            try {
                const info = model.info;
                const arch = meta["general.architecture"];
                expect(info.architecture).toBe(arch);
                expect(info.layers).toBe(meta[`${arch}.block_count`]);
                expect(info.embeddingSize).toBe(meta[`${arch}.embedding_length`]);
                expect(info.heads).toBe(meta[`${arch}.attention.head_count`]);
                expect(info.headsKv).toBe(meta[`${arch}.attention.head_count_kv`] ?? meta[`${arch}.attention.head_count`]);
                expect(info.trainContextSize).toBe(meta[`${arch}.context_length`]);
                expect(info.vocabSize).toBe((meta["tokenizer.ggml.tokens"] as unknown[]).length);
                expect(VOCAB_TYPE[meta["tokenizer.ggml.model"] as string], "a tokenizer model this test knows").toBeDefined();
                expect(info.vocabType).toBe(VOCAB_TYPE[meta["tokenizer.ggml.model"] as string]);
                expect(info.bos).toBe(meta["tokenizer.ggml.bos_token_id"]);
                expect(info.eos).toBe(meta["tokenizer.ggml.eos_token_id"]);
                expect(meta["general.name"], "every shared model names itself").toBeDefined();
                expect(info.name).toBe(meta["general.name"]);
                // Parameters: the sum of every tensor's elements.
                const params = ref.fullTensorInfo!.reduce((n, t) => n + t.dimensions.reduce((a: number, d) => a * Number(d), 1), 0);
                expect(info.parameters).toBe(params);
                // Every key/value, arrays whole.
                expect(Object.keys(info.metadata).sort()).toEqual(Object.keys(meta).sort());
                for (const [k, v] of Object.entries(meta)) {
                    const got = plain(info.metadata[k]);
                    if (typeof v === "number" && !Number.isInteger(v)) expect(got as number, k).toBeCloseTo(v, 5);
                    else expect(got, k).toEqual(plain(v));
                }
            } finally {
                await model.dispose();
            }
        });
    }
});
