// Bad model files: every one either loads or rejects with a LlamaError carrying a code.
// None may crash or hang the process (llama.cpp aborts on a failed assert; llamafuse turns
// aborts during loading into errors). Also: wrong argument types and misspelled options.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LlamaError, loadModel } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function outcome(file: string): Promise<string> {
    try {
        const m = await loadModel(file);
        // Loaded: it must then be a usable model.
        await m.tokenize("hello");
        await m.dispose();
        return "loaded";
    } catch (err) {
        expect(err).toBeInstanceOf(LlamaError);
        expect((err as LlamaError).code).toMatch(/^ERR_[A-Z_]+$/);
        return (err as LlamaError).code;
    }
}

// A small deterministic PRNG so a failing mutation can be reproduced from its index.
function rng(seed: number): () => number {
    let s = seed >>> 0 || 1;
    return () => {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        return (s >>> 0) / 2 ** 32;
    };
}

describe("bad model files", () => {
    it("missing path → ERR_FILE_NOT_FOUND", async () => {
        await expect(loadModel(path.join(dir, "nope.gguf"))).rejects.toMatchObject({ code: "ERR_FILE_NOT_FOUND" });
    });

    it("a directory, an empty file, a text file → ERR_INVALID_MODEL", async () => {
        const sub = path.join(dir, "a-dir.gguf");
        mkdirSync(sub);
        const empty = path.join(dir, "empty.gguf");
        writeFileSync(empty, "");
        const text = path.join(dir, "text.gguf");
        writeFileSync(text, "this is not a model, just some text\n".repeat(20));
        for (const f of [sub, empty, text]) await expect(loadModel(f)).rejects.toMatchObject({ code: "ERR_INVALID_MODEL" });
    });

    it("GGUFs truncated at many offsets reject cleanly", async () => {
        const src = readFileSync(MODELS.stories260K);
        const offsets = [4, 8, 16, 24, 32, 100, 1000, 5000, 20_000, 100_000, 500_000, src.length - 1000, src.length - 1];
        for (const n of offsets) {
            const f = path.join(dir, `trunc-${n}.gguf`);
            writeFileSync(f, src.subarray(0, n));
            expect(await outcome(f), `truncated at ${n}`).toMatch(/^ERR_INVALID_MODEL$/);
        }
    });

    it("flipped bytes in the header region load or reject, never crash", async () => {
        const src = readFileSync(MODELS.tinyRandom);
        const seen = new Map<string, number>();
        for (let at = 4; at < 4096; at += 61) {
            const buf = Buffer.from(src);
            buf[at] = buf[at]! ^ 0xff;
            const f = path.join(dir, `flip-${at}.gguf`);
            writeFileSync(f, buf);
            const r = await outcome(f);
            seen.set(r, (seen.get(r) ?? 0) + 1);
        }
        expect(seen.get("ERR_INVALID_MODEL") ?? 0).toBeGreaterThan(0);
    });

    it("fuzz: 240 mutated or truncated copies of real models", async () => {
        const sources = [readFileSync(MODELS.stories260K), readFileSync(MODELS.tiny656K), readFileSync(MODELS.tinyRandom)];
        const seen = new Map<string, number>();
        for (let i = 0; i < 240; i++) {
            const r = rng(1000 + i);
            const src = sources[i % sources.length]!;
            // Most of a GGUF's structure is in its first few KB (header, metadata, tensor infos).
            const headerSpan = Math.min(src.length, 64 * 1024);
            let buf = Buffer.from(src);
            const kind = i % 4;
            if (kind === 0) {
                for (let k = 0, n = 1 + Math.floor(r() * 8); k < n; k++) buf[Math.floor(r() * headerSpan)] = Math.floor(r() * 256);
            } else if (kind === 1) {
                buf = buf.subarray(0, Math.floor(r() * src.length));
            } else if (kind === 2) {
                // A plausible-looking but wrong length or count: write a random u64 at an 8-aligned offset.
                const at = 8 + 8 * Math.floor(r() * (headerSpan / 8 - 2));
                buf.writeBigUInt64LE(BigInt(Math.floor(r() * 2 ** 32)) << BigInt(Math.floor(r() * 32)), at);
            } else {
                for (let k = 0, n = 1 + Math.floor(r() * 64); k < n; k++) buf[Math.floor(r() * buf.length)] ^= 1 << Math.floor(r() * 8);
            }
            const f = path.join(dir, `fuzz-${i}.gguf`);
            writeFileSync(f, buf);
            const res = await outcome(f);
            seen.set(res, (seen.get(res) ?? 0) + 1);
            rmSync(f);
        }
        const total = [...seen.values()].reduce((a, b) => a + b, 0);
        expect(total).toBe(240);
        expect(seen.get("ERR_INVALID_MODEL") ?? 0).toBeGreaterThan(20);
    });
});

describe("argument checking", () => {
    it("wrong types reject with ERR_INVALID_OPTION naming the option", async () => {
        await expect(loadModel(42 as never)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("path") });
        await expect(loadModel(MODELS.stories260K, { useMmap: "yes" as never })).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION",
            message: 'Expected a boolean for useMmap but received "yes" of type string',
        });
        await expect(loadModel(MODELS.stories260K, { gpuLayers: 1.5 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("gpuLayers") });
        await expect(loadModel(MODELS.stories260K, { onProgress: 3 as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("onProgress") });
        const m = await loadModel(MODELS.stories260K);
        await expect(m.tokenize(5 as never)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("text") });
        await expect(m.tokenize("x", { addSpecial: 1 as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("addSpecial") });
        await expect(m.detokenize([1, 99999])).rejects.toMatchObject({ code: "ERR_INVALID_TOKEN" });
        await expect(m.detokenize([-1])).rejects.toMatchObject({ code: "ERR_INVALID_TOKEN" });
        await expect(m.detokenize([1.5])).rejects.toMatchObject({ code: "ERR_INVALID_TOKEN" });
        await expect(m.detokenize("abc" as never)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await m.dispose();
    });

    it("misspelled option names are reported, with a suggestion", async () => {
        await expect(loadModel(MODELS.stories260K, { usemmap: false } as never)).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION",
            message: 'Unknown option "usemmap" for loadModel: did you mean "useMmap"?',
        });
        const m = await loadModel(MODELS.stories260K);
        await expect(m.tokenize("x", { addspecial: true } as never)).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION",
            message: expect.stringContaining('did you mean "addSpecial"'),
        });
        await expect(m.createContext({ contextsize: 10 } as never)).rejects.toMatchObject({ message: expect.stringContaining('did you mean "contextSize"') });
        await m.dispose();
    });
});
