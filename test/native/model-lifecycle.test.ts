// Loading off the main thread, progress, abort, dispose, and memory over many cycles.
import { describe, expect, it } from "vitest";
import { LlamaError, loadModel } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";
import { runMemoryProbe } from "../helpers/run-memory-probe.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

// ~45M parameters, f16: about 90 MB, large enough that a load takes a noticeable time.
const bigModel = () => cachedSynthModel({ layers: 4, embedding: 512, heads: 8, headsKv: 8, ff: 1536, vocab: "llama-spm", type: "f16", seed: 3 });

describe("loadModel", () => {
    it("never blocks the event loop: a timer keeps ticking during a load", async () => {
        const file = await bigModel();
        const ticks: number[] = [];
        const timer = setInterval(() => ticks.push(performance.now()), 1);
        const t0 = performance.now();
        const model = await loadModel(file, { useMmap: false });
        const t1 = performance.now();
        clearInterval(timer);
        const during = ticks.filter((t) => t > t0 && t < t1);
        const gaps = during.slice(1).map((t, i) => t - during[i]!);
        // The load reads ~90 MB; the loop must have run throughout it.
        expect(t1 - t0).toBeGreaterThan(20);
        expect(during.length).toBeGreaterThanOrEqual(5);
        expect(Math.max(...gaps)).toBeLessThan(Math.max(30, (t1 - t0) / 3));
        await model.dispose();
    });

    it("reports increasing progress fractions ending at 1", async () => {
        const seen: number[] = [];
        const model = await loadModel(await bigModel(), { onProgress: (p) => seen.push(p) });
        expect(seen.length).toBeGreaterThan(2);
        for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
        expect(seen.at(-1)).toBe(1);
        await model.dispose();
    });

    it("aborts with ERR_ABORTED, before or during the load, and leaves nothing behind", async () => {
        const ac = new AbortController();
        ac.abort();
        await expect(loadModel(MODELS.stories260K, { signal: ac.signal })).rejects.toMatchObject({ code: "ERR_ABORTED" });

        const file = await bigModel();
        const rss0 = process.memoryUsage().rss;
        for (let i = 0; i < 5; i++) {
            const ac2 = new AbortController();
            // Abort from inside the load, at its first progress report.
            const p = loadModel(file, { useMmap: false, signal: ac2.signal, onProgress: (f) => f > 0 && ac2.abort() });
            await expect(p).rejects.toMatchObject({ code: "ERR_ABORTED" });
        }
        // Five aborted 90 MB loads: the weights they had started reading were freed.
        expect(process.memoryUsage().rss - rss0).toBeLessThan(60 * 1024 * 1024);
        // And a normal load still works afterwards.
        const model = await loadModel(file);
        expect(model.info.layers).toBe(4);
        await model.dispose();
    });
});

describe("dispose", () => {
    it("is idempotent, frees contexts too, and later calls reject with ERR_DISPOSED", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await Promise.all([model.dispose(), model.dispose()]);
        await model.dispose();
        expect(model.disposed).toBe(true);
        expect(ctx.disposed).toBe(true);
        await expect(model.tokenize("x")).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        await expect(model.detokenize([1])).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        await expect(model.createContext()).rejects.toBeInstanceOf(LlamaError);
        await expect(ctx.forward({ sequence: 0, tokens: [1] })).rejects.toMatchObject({ code: "ERR_DISPOSED" });
    });

    it("waits for calls in flight and backs Symbol.asyncDispose", async () => {
        const model = await loadModel(MODELS.tinyRandom);
        const pending = model.tokenize("some text ".repeat(1000));
        await model[Symbol.asyncDispose]();
        expect((await pending).length).toBeGreaterThan(1000);
        expect(model.disposed).toBe(true);
    });
});

describe("memory", () => {
    // Measured in a child with --expose-gc and a fixed glibc mmap threshold
    // (test/helpers/memory-probe.ts): 0.02 to 0.5 MB over 50 cycles. A leaked model (1.2 MB of
    // weights each, read without mmap) would add 60 MB, a leaked 256-token KV cache 8 MB.
    it("50 load/dispose cycles: resident growth under 4 MB", async () => {
        const r = await runMemoryProbe("load-cycles");
        console.log(`resident growth after 50 load/dispose cycles: ${(r.grownBytes / 1048576).toFixed(1)} MB`);
        expect(r.grownBytes).toBeLessThan(4 * 1024 * 1024);
    });
});
