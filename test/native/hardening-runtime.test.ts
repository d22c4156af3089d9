// Runtime inputs that used to crash, hang or give the wrong error (issue 15): grammars, KV
// shifts, state blobs, tokenizing what a vocabulary cannot encode. Cases that could crash or
// hang run in a child process (hardening-child.ts); the rest run here.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaError, loadModel, synthModel, type Context, type Model } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";
import { outcomeCode, runInChild } from "./hardening-child.js";

const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-harden-rt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const grammarCase = (grammar: string, tokens = 3) => `
    const model = await lf.loadModel(${JSON.stringify(MODELS.stories260K)});
    const ctx = await model.createContext({ contextSize: 64, threads: 1 });
    const prompt = await model.tokenize("Once upon a time");
    const out = [];
    const t0 = Date.now();
    for await (const s of ctx.generate(prompt, { maxTokens: ${tokens}, temperature: 0, grammar: ${JSON.stringify(grammar)} })) out.push(s.text);
    return { out, ms: Date.now() - t0 };
`;

describe("grammars llama.cpp cannot take", () => {
    it("a 20,000-deep nesting → ERR_INVALID_GRAMMAR before llama.cpp's recursive parser runs", () => {
        const deep = "root ::= " + "(".repeat(20_000) + '"a"' + ")".repeat(20_000);
        const o = runInChild(grammarCase(deep));
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_GRAMMAR");
        expect(JSON.stringify(o.result)).toContain("nested");
    });

    it("left recursion behind a nullable symbol → ERR_INVALID_GRAMMAR at once (it hung, allocating)", () => {
        const o = runInChild(grammarCase('root ::= x root "a" | "b"\nx ::= "c"?'), { timeoutMs: 30_000 });
        expect(o.timedOut, o.output).toBe(false);
        expect(o.signal, o.output).toBeNull();
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_GRAMMAR");
        expect(JSON.stringify(o.result)).toContain("left recursion");
    });

    it("plain left recursion is still refused, and right recursion still runs", () => {
        const left = runInChild(grammarCase('root ::= root "a" | "b"'), { timeoutMs: 30_000 });
        expect(outcomeCode(left), left.output).toBe("ERR_INVALID_GRAMMAR");
        const right = runInChild(grammarCase('root ::= " " x\nx ::= [a-z]+ " " x | "."', 4), { timeoutMs: 30_000 });
        expect(outcomeCode(right), right.output).toBe("ok");
    });

    it("three nested bounded repetitions → ERR_INVALID_GRAMMAR; two levels still run in bounded time", () => {
        const three = runInChild(grammarCase('root ::= (("a"{0,20}){0,20}){0,20}'), { timeoutMs: 30_000 });
        expect(three.timedOut, three.output).toBe(false);
        expect(outcomeCode(three), three.output).toBe("ERR_INVALID_GRAMMAR");
        expect(JSON.stringify(three.result)).toContain("repetitions");
        const two = runInChild(grammarCase('root ::= " " ([a-z]{1,5} " "?){0,8} "."', 6), { timeoutMs: 60_000 });
        expect(outcomeCode(two), two.output).toBe("ok");
    });

    it("a syntax error's detail is in the message, and nothing is printed", () => {
        const o = runInChild(grammarCase('root ::= "a" | ( "b"'));
        expect(outcomeCode(o), o.output).toBe("ERR_INVALID_GRAMMAR");
        const message = (o.result as { error: { message: string } }).error.message;
        expect(message.length).toBeGreaterThan("invalid GBNF grammar: ".length + 5);
        expect(o.output.split("--- stderr")[1]).not.toContain("error parsing grammar");
    });
});

describe("runtime validation", () => {
    let model: Model;
    let tiny: Model;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        tiny = await loadModel(MODELS.tiny656K);
    });
    afterAll(async () => {
        await model?.dispose();
        await tiny?.dispose();
    });

    it('tokenize("ü") on TinyStories-656K (no byte fallback) → ERR_UNSUPPORTED, not ERR_NATIVE "unordered_map::at"', async () => {
        const err = await tiny.tokenize("ü").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LlamaError);
        expect((err as LlamaError).code).toBe("ERR_UNSUPPORTED");
        expect((err as LlamaError).message).toMatch(/cannot encode/);
        // ASCII still tokenizes, after the failure too.
        expect((await tiny.tokenize("Once upon a time")).length).toBeGreaterThan(1);
    });

    it("kv.shift on a bf16 cache: canShift false and ERR_UNSUPPORTED (the forward after it died in ggml's rope)", async () => {
        const ctx = await model.createContext({ contextSize: 64, threads: 1, kvType: "bf16" });
        try {
            expect(ctx.canShift).toBe(false);
            await ctx.forward({ tokens: await model.tokenize("Once upon a time"), sequence: 0 });
            await expect(ctx.kv.shift(0, 0, -1, 2)).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
            await ctx.forward({ tokens: [100], sequence: 0 }); // still usable
        } finally {
            await ctx.dispose();
        }
    });

    it("kv.shift on q8_0 and q4_0 caches: refused for head sizes 32 and 96 (SIGSEGV at the next forward), allowed and working for 64 and 128", async () => {
        for (const headDim of [32, 64, 96, 128]) {
            const file = path.join(dir, `synth-hd${headDim}.gguf`);
            await synthModel({ preset: "tiny", headDim, output: file, seed: 1 });
            for (const kvType of ["q8_0", "q4_0"]) {
                // In a child: if the rule let a crashing shape through, the crash is this case's.
                const o = runInChild(`
                    const model = await lf.loadModel(${JSON.stringify(file)});
                    const ctx = await model.createContext({ contextSize: 64, threads: 1, kvType: ${JSON.stringify(kvType)}, attention: "ggml" });
                    const tokens = await model.tokenize("Once upon a time there was a little");
                    await ctx.forward({ tokens, sequence: 0 });
                    let shift = "ok";
                    try { await ctx.kv.shift(0, 2, -1, -2); } catch (e) { shift = e.code; }
                    await ctx.forward({ tokens: tokens.slice(0, 3), sequence: 0 });
                    return { canShift: ctx.canShift, shift, positions: await ctx.kv.positions(0) };
                `);
                const label = `head ${headDim} ${kvType}\n${o.output}`;
                expect(o.signal, label).toBeNull();
                expect(outcomeCode(o), label).toBe("ok");
                const r = o.result as { canShift: boolean; shift: string };
                expect(r.canShift, label).toBe(headDim % 64 === 0);
                expect(r.shift, label).toBe(headDim % 64 === 0 ? "ok" : "ERR_UNSUPPORTED");
            }
        }
    }, 300_000);

    describe("kv.shift range", () => {
        let ctx: Context;
        beforeAll(async () => {
            ctx = await model.createContext({ contextSize: 64, threads: 1 });
            await ctx.forward({ tokens: await model.tokenize("Once upon a time there was"), sequence: 0 });
        });
        afterAll(() => ctx?.dispose());

        it("a delta of 2^40 or 2^31-1, or one past the context, → ERR_INVALID_OPTION and the cache unchanged", async () => {
            const before = await ctx.kv.positions(0);
            for (const delta of [2 ** 40, 2 ** 31 - 1, ctx.contextSize - before.max]) {
                await expect(ctx.kv.shift(0, 0, -1, delta), `delta ${delta}`).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
            }
            expect(await ctx.kv.positions(0)).toEqual(before);
            await ctx.forward({ tokens: [100], sequence: 0 });
        });

        it("a shift that stays inside the context works", async () => {
            const before = await ctx.kv.positions(0);
            await ctx.kv.shift(0, 0, -1, 3);
            expect(await ctx.kv.positions(0)).toEqual({ min: before.min + 3, max: before.max + 3 });
        });
    });

    describe("state blobs", () => {
        let ctx: Context;
        let saved: Buffer;
        const MAGIC = "LLAMAFUSE-STATE\n";
        const split = (b: Buffer) => {
            const n = b.readUInt32LE(MAGIC.length);
            return { header: JSON.parse(b.toString("utf8", MAGIC.length + 4, MAGIC.length + 4 + n)) as Record<string, unknown>, payload: b.subarray(MAGIC.length + 4 + n) };
        };
        const join = (header: unknown, payload: Uint8Array) => {
            const json = Buffer.from(JSON.stringify(header));
            const len = Buffer.alloc(4);
            len.writeUInt32LE(json.length);
            return Buffer.concat([Buffer.from(MAGIC), len, json, payload]);
        };
        beforeAll(async () => {
            ctx = await model.createContext({ contextSize: 64, threads: 1 });
            await ctx.forward({ tokens: await model.tokenize("Once upon a time"), sequence: 0 });
            saved = (await ctx.saveState())!;
        });
        afterAll(() => ctx?.dispose());

        it("a valid header with 12 zero bytes of payload → ERR_STATE_MISMATCH (it loaded and kept the old cache)", async () => {
            const { header } = split(saved);
            await expect(ctx.loadState(join(header, new Uint8Array(12)))).rejects.toMatchObject({ code: "ERR_STATE_MISMATCH" });
            // Even with the length and checksum made to match, the native check refuses it.
            const { crc32 } = await import("node:zlib");
            const zeros = new Uint8Array(12);
            await expect(ctx.loadState(join({ ...header, length: 12, crc32: crc32(zeros) }, zeros))).rejects.toMatchObject({ code: "ERR_STATE_MISMATCH" });
            const short = new Uint8Array(5);
            await expect(ctx.loadState(join({ ...header, length: 5, crc32: crc32(short) }, short))).rejects.toMatchObject({ code: "ERR_STATE_MISMATCH" });
        });

        it("every one of 300 single-bit flips in the payload is refused", async () => {
            const { payload } = split(saved);
            let refused = 0;
            for (let i = 0; i < 300; i++) {
                const b = Buffer.from(saved);
                const at = saved.length - payload.length + Math.floor(((i * 2654435761) >>> 0) % payload.length);
                b[at] = b[at]! ^ (1 << (i % 8));
                const err = await ctx.loadState(b).catch((e: unknown) => e);
                if (err instanceof LlamaError && err.code === "ERR_STATE_MISMATCH") refused++;
            }
            expect(refused).toBe(300);
        });

        it("headers that are null, lack the model, or are not objects → ERR_STATE_MISMATCH (not a TypeError)", async () => {
            const { header, payload } = split(saved);
            const { model: _omit, ...noModel } = header;
            for (const h of [null, noModel, [], 42, "x", { ...header, version: 1 }]) {
                const err = await ctx.loadState(join(h, payload)).catch((e: unknown) => e);
                expect(err, JSON.stringify(h)).toBeInstanceOf(LlamaError);
                expect((err as LlamaError).code).toBe("ERR_STATE_MISMATCH");
            }
        });

        it("the Buffer is copied when loadState is called: mutating it afterwards changes nothing", async () => {
            const other = await model.createContext({ contextSize: 64, threads: 1 });
            try {
                const buf = Buffer.from(saved);
                const p = other.loadState(buf);
                buf.fill(0);
                await p;
                const a = await ctx.sample(0, { temperature: 0 });
                const b = await other.sample(0, { temperature: 0 });
                expect(b.token).toBe(a.token);
                expect(await other.kv.positions(0)).toEqual(await ctx.kv.positions(0));
            } finally {
                await other.dispose();
            }
        });

        it("saveState to a missing folder or to a directory → coded errors", async () => {
            await expect(ctx.saveState(path.join(dir, "no-such-folder", "s.state"))).rejects.toMatchObject({ code: "ERR_FILE_NOT_FOUND" });
            await expect(ctx.saveState(dir)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        });
    });
});
