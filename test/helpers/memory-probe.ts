// Resident-memory probe, run in a child process started with --expose-gc (runMemoryProbe below):
// a vitest worker has no gc(), so garbage from the loop itself would sit in the heap and hide
// a real leak under a loose bound. Prints one JSON line: { grownBytes, arrayBuffersBytes }.
//
//   node --expose-gc --import tsx test/helpers/memory-probe.ts <scenario> [leakBytesPerForward]
//
// Scenarios:
//   forwards     100 context create/forward/dispose cycles, then 10,000 one-token forwards (after
//                a warm-up of the same kind)
//   load-cycles  50 model load / tokenize / context / forward / dispose cycles
// leakBytesPerForward > 0 keeps that many bytes per forward alive on purpose: the tests run it
// once to show the bound they use would catch a leak of one logits copy per forward.
import { loadModel } from "../../src/index.js";
import { MODELS } from "./models.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");

const [scenario, leakArg] = process.argv.slice(2);
const leakBytes = Number(leakArg ?? 0);
const leaked: Uint8Array[] = [];

// gc() three times with turns of the event loop between: the native memory behind a collected
// external ArrayBuffer (the logits) is released by a finalizer that runs after the collection.
async function settle(): Promise<void> {
    for (let i = 0; i < 3; i++) {
        gc!();
        await new Promise((resolve) => setTimeout(resolve, 10));
    }
}

async function forwards(): Promise<() => Promise<void>> {
    const stories = await loadModel(MODELS.stories260K);
    const loop = async (contexts: number, forwards: number, leak: boolean) => {
        for (let i = 0; i < contexts; i++) {
            const c = await stories.createContext({ contextSize: 256, threads: 1 });
            await c.forward({ sequence: 0, tokens: [1, 403] });
            await c.dispose();
        }
        const ctx = await stories.createContext({ contextSize: 256, threads: 1 });
        for (let i = 0; i < forwards; i++) {
            if (i % 250 === 0) await ctx.kv.clear();
            const out = await ctx.forward({ sequence: 0, tokens: [300 + (i % 100)] });
            if (leak && leakBytes > 0) leaked.push(new Uint8Array(leakBytes).fill(1));
            else out.logits(0);
        }
        await ctx.dispose();
    };
    // The allocators grow to a plateau over the first few thousand forwards (~4 MB measured,
    // then flat within ±1 MB per 5,000): reach it before the baseline.
    await loop(60, 5000, false);
    return () => loop(100, 10_000, true);
}

async function loadCycles(): Promise<() => Promise<void>> {
    const cycle = async (leak: boolean) => {
        const m = await loadModel(MODELS.stories260K, { useMmap: false });
        await m.tokenize("Once upon a time");
        const c = await m.createContext({ contextSize: 256, threads: 1 });
        await c.forward({ sequence: 0, tokens: [1, 403, 407] });
        if (leak && leakBytes > 0) leaked.push(new Uint8Array(leakBytes).fill(1));
        await m.dispose();
    };
    // The resident set climbs ~35 MB over the first ~70 cycles, then moves within ±8 MB per 50
    // (allocator caches): reach the plateau before the baseline.
    for (let i = 0; i < 70; i++) await cycle(false);
    return async () => {
        for (let i = 0; i < 50; i++) await cycle(true);
    };
}

const run = scenario === "forwards" ? await forwards() : scenario === "load-cycles" ? await loadCycles() : null;
if (!run) throw new Error(`unknown scenario ${scenario}`);
await settle();
const rss0 = process.memoryUsage().rss;
const ab0 = process.memoryUsage().arrayBuffers;
const heap0 = process.memoryUsage().heapTotal;
await run();
await settle();
const m = process.memoryUsage();
process.stdout.write(JSON.stringify({ grownBytes: m.rss - rss0, arrayBuffersBytes: m.arrayBuffers - ab0, heapTotalBytes: m.heapTotal - heap0, leakedItems: leaked.length }) + "\n");

