// Model files that llama.cpp loads and then dies on (issue 15, crash classes 1-4 and 9): each
// is built here by editing a real model with test/fuzz/gguf-edit.ts, and run in a child
// process (hardening-child.ts) so that a crash names its case. Every one must end in a coded
// LlamaError with the process alive; the unmodified model is the control that the edit, not
// the harness, causes the error.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cloneGguf, decodeGguf, encodeGguf, getKv, setKv, T, type Gguf } from "../fuzz/gguf-edit.js";
import { MODELS, vocabDir } from "../helpers/models.js";
import { GgmlType, planSynthModel, tensorByteSize, writeGguf } from "../../src/synth/index.js";
import { outcomeCode, runInChild } from "./hardening-child.js";

const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-harden-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stories = decodeGguf(readFileSync(MODELS.stories260K));
const tinyRandom = decodeGguf(readFileSync(MODELS.tinyRandom));

function write(name: string, g: Gguf): string {
    const file = path.join(dir, `${name}.gguf`);
    writeFileSync(file, encodeGguf(g));
    return file;
}

function edited(base: Gguf, name: string, edit: (g: Gguf) => void): string {
    const g = cloneGguf(base);
    edit(g);
    return write(name, g);
}

// Load, tokenize, create a context, forward, and generate: the path a user takes.
const FULL_PATH = (file: string) => `
    const model = await lf.loadModel(${JSON.stringify(file)});
    const tokens = await model.tokenize("Once upon a time");
    const ctx = await model.createContext({ contextSize: 64, threads: 1 });
    await ctx.forward({ tokens, sequence: 0 });
    const out = [];
    for await (const s of ctx.generate(tokens.slice(0, 2), { maxTokens: 4, temperature: 0 })) out.push(s.token);
    return { out };
`;

describe("crash classes from model files: a coded error, the process alive", () => {
    it("control: the unmodified model runs the whole path", () => {
        const o = runInChild(FULL_PATH(write("control", stories)));
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ok");
    });

    it('1. tokenizer.ggml.model = "none": tokenize, tokenPieces, grammar, DRY → ERR_UNSUPPORTED; forward by ids works', () => {
        // With "none", llama.cpp takes the vocabulary size from llama.vocab_size: the model loads.
        const file = edited(stories, "vocab-none", (g) => {
            setKv(g, "tokenizer.ggml.model", { type: T.str, value: "none" });
            setKv(g, "llama.vocab_size", { type: T.u32, value: 512 });
        });
        const o = runInChild(`
            const model = await lf.loadModel(${JSON.stringify(file)});
            const codes = {};
            const code = async (name, f) => { try { await f(); codes[name] = "ok"; } catch (e) { codes[name] = e.code; } };
            await code("tokenize", () => model.tokenize("hello"));
            await code("detokenize", () => model.detokenize([1]));
            await code("tokenPieces", () => model.tokenPieces([1]));
            try { model.tokenPieces([1]); codes.piecesClass = "returned"; } catch (e) { codes.piecesClass = e instanceof lf.LlamaError ? "LlamaError" : e?.constructor?.name; }
            await code("grammar", () => lf.createSampler(model, { grammar: 'root ::= "a"' }));
            await code("dry", () => lf.createSampler(model, { dryMultiplier: 0.8 }));
            const ctx = await model.createContext({ contextSize: 64, threads: 1 });
            await code("forward", () => ctx.forward({ tokens: [1, 2, 3], sequence: 0 }));
            await code("generate", async () => { for await (const _ of ctx.generate([1, 2], { maxTokens: 2 })) {} });
            return codes;
        `);
        expect(o.signal, o.output).toBeNull();
        const codes = o.result as Record<string, string>;
        expect(codes.tokenize, o.output).toBe("ERR_UNSUPPORTED");
        expect(codes.tokenPieces, o.output).toBe("ERR_UNSUPPORTED");
        expect(codes.piecesClass, o.output).toBe("LlamaError"); // the fuzzer found it thrown as a plain Error
        expect(codes.grammar, o.output).toBe("ERR_UNSUPPORTED");
        expect(codes.dry, o.output).toBe("ERR_UNSUPPORTED");
        // Token ids still run through the weights; text output needs the tokenizer.
        expect(codes.forward, o.output).toBe("ok");
        expect(codes.generate, o.output).toBe("ERR_UNSUPPORTED"); // it died in the scheduler's piece lookup (fuzz seed 28)
    });

    it("2. empty tokenizer.ggml.tokens in a vocab-only load → ERR_INVALID_MODEL", () => {
        const file = edited(stories, "empty-tokens", (g) => {
            for (const k of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) {
                const kv = getKv(g, k);
                if (kv) kv.value = [];
            }
        });
        const o = runInChild(`
            const model = await lf.loadModel(${JSON.stringify(file)}, { vocabOnly: true });
            return { vocabSize: model.info.vocabSize, tokens: Array.from(await model.tokenize("hello")) };
        `);
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_MODEL");
    });

    it('9. an SPM vocabulary relabelled "rwkv": refused at load (tokenize("🦙") looped forever; found by the fuzzer, seed 1065)', () => {
        const spm = decodeGguf(readFileSync(path.join(vocabDir, "ggml-vocab-llama-spm.gguf")));
        const file = edited(spm, "vocab-rwkv", (g) => setKv(g, "tokenizer.ggml.model", { type: T.str, value: "rwkv" }));
        const o = runInChild(`
            const model = await lf.loadModel(${JSON.stringify(file)}, { vocabOnly: true });
            return Array.from(await model.tokenize("🦙"));
        `, { timeoutMs: 30_000 });
        expect(o.timedOut, o.output).toBe(false);
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_MODEL");
        expect(JSON.stringify(o.result)).toContain("rwkv");
    });

    const retypes: [string, Gguf, string, number][] = [
        ["F32 weight → I32", stories, "blk.0.attn_q.weight", 26],
        ["F16 weight → I16", tinyRandom, "blk.0.attn_q.weight", 25],
        ["F32 norm → F16", stories, "blk.0.attn_norm.weight", 1],
        ["F32 output norm → BF16", stories, "output_norm.weight", 30],
    ];
    for (const [label, base, tensor, type] of retypes) {
        it(`3. ${label} → ERR_INVALID_MODEL at load (it used to load, then kill forward)`, () => {
            const file = edited(base, `retype-${tensor}-${type}`, (g) => {
                const t = g.tensors.find((x) => x.name === tensor);
                expect(t, `${tensor} in the model`).toBeDefined();
                t!.type = type;
            });
            const o = runInChild(FULL_PATH(file));
            expect(o.signal, o.output).toBeNull();
            expect(outcomeCode(o), o.output).toBe("ERR_INVALID_MODEL");
            expect((o.result as { error: { message: string } }).error.message).toContain(tensor);
        });
    }

    for (const eps of [-1, Number.NaN, -Infinity, Infinity]) {
        it(`4. layer_norm_rms_epsilon = ${eps} → ERR_INVALID_MODEL`, () => {
            const file = edited(stories, `eps-${eps}`, (g) => setKv(g, "llama.attention.layer_norm_rms_epsilon", { type: T.f32, value: eps }));
            const o = runInChild(FULL_PATH(file));
            expect(o.signal, o.output).toBeNull();
            expect(outcomeCode(o), o.output).toBe("ERR_INVALID_MODEL");
        });
    }

    it("4. hparams the graph asserts on: head_count_kv not dividing head_count, odd or oversized rope dims", () => {
        const cases: [string, (g: Gguf) => void][] = [
            ["kv-3", (g) => setKv(g, "llama.attention.head_count_kv", { type: T.u32, value: 3 })],
            ["rope-7", (g) => setKv(g, "llama.rope.dimension_count", { type: T.u32, value: 7 })],
            ["rope-64", (g) => setKv(g, "llama.rope.dimension_count", { type: T.u32, value: 64 })],
        ];
        for (const [name, edit] of cases) {
            const o = runInChild(FULL_PATH(edited(stories, name, edit)));
            expect(o.signal, `${name}\n${o.output}`).toBeNull();
            expect(outcomeCode(o), `${name}\n${o.output}`).toMatch(/^ERR_INVALID_MODEL$/);
        }
    });
});

describe("a BERT model whose token_types.weight is not F32", () => {
    // The fuzz editor cannot write a parsable BERT file, so the synth writer lays one out and
    // this writes it with the token-type table in the type under test. Values are zeros: the
    // check is on types. ggml's CPU add took the F16 table and killed the process.
    async function bertWithTokenTypes(type: number): Promise<string> {
        const plan = await planSynthModel({ preset: "bert-tiny", seed: 21, output: "/dev/null" });
        const file = path.join(dir, `bert-token-types-${type}.gguf`);
        const tensors = plan.tensors.map((t) => (t.name === "token_types.weight" ? { ...t, type } : t));
        expect(tensors.some((t) => t.name === "token_types.weight" && t.type === type)).toBe(true);
        await writeGguf(file, plan.metadata, tensors.map((t) => ({
            name: t.name, dims: t.dims, type: t.type, data: () => [new Uint8Array(tensorByteSize(t.type, t.dims))],
        })));
        return file;
    }
    const EMBED = (file: string) => `
        const model = await lf.loadModel(${JSON.stringify(file)});
        const ectx = await model.createEmbeddingContext({ threads: 1 });
        const [v] = await ectx.embed(["hello world"]);
        return { dims: v.length };
    `;

    it("control: the same file with an F32 table loads and embeds", async () => {
        const o = runInChild(EMBED(await bertWithTokenTypes(GgmlType.F32)));
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ok");
    });

    it("F16 → ERR_INVALID_MODEL at load, naming the tensor (it loaded, then killed the embedding forward)", async () => {
        const o = runInChild(EMBED(await bertWithTokenTypes(GgmlType.F16)));
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_MODEL");
        expect((o.result as { error: { message: string } }).error.message).toContain("token_types.weight");
    });
});
