// Concurrent greedy streams on one context: aggregate generated tokens/s at 1, 4 and 8
// streams (the scheduler batches them into one llama_decode per step), and where a
// single stream's time goes (the scheduler's own counters: llama_decode, sampling, the rest).
//   npx tsx bench/streams.bench.ts [model.gguf] [--threads 2] [--tokens 256] [--runs 3]
import { loadModel } from "../src/index.js";

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : def;
};
const modelPath = args.find((a, i) => !a.startsWith("--") && (i === 0 || !args[i - 1]!.startsWith("--"))) ?? "../shared/models/stories260K.gguf";
const threads = opt("threads", 2);
const tokens = opt("tokens", 256);
const runs = opt("runs", 3);
const streamCounts = [1, 4, 8];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const model = await loadModel(modelPath);
const prompts = ["Once upon a time", "The little dog", "Tom and his friend went to the", "One day, a girl named Sue", "Lily saw a big", "The sun was", "A boy named Tim", "In the park"];
const ctx = await model.createContext({ contextSize: 8 * (tokens + 32), sequences: 8, threads, attention: "ggml" });
const encoded = await Promise.all(prompts.map((p) => model.tokenize(p)));

console.log(`model ${modelPath}, threads ${threads}, ${tokens} tokens per stream, median of ${runs}`);
const single: number[] = [];
for (const n of streamCounts) {
    const rates: number[] = [];
    for (let r = 0; r < runs; r++) {
        await ctx.kv.clear();
        const before = ctx.schedulerStats();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const counts = await Promise.all(Array.from({ length: n }, async (_, s) => {
            let k = 0;
            for await (const _step of ctx.generate(encoded[s]!, { temperature: 0, maxTokens: tokens, stopOnEog: false, sequence: s })) k++;
            return k;
        }));
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const total = counts.reduce((a, b) => a + b, 0);
        rates.push((total / ms) * 1000);
        const after = ctx.schedulerStats()!;
        if (n === 1) {
            const d = (k: "steps" | "stepNs" | "decodeNs" | "sampleNs" | "acquireNs" | "textNs") => after[k] - (before?.[k] ?? 0);
            const perTok = (ns: number) => (ns / 1000 / total).toFixed(1);
            single.push(ms);
            console.log(`  1 stream run ${r}: ${((total / ms) * 1000).toFixed(0)} tok/s; per token: wall ${((ms * 1000) / total).toFixed(1)} µs, ` +
                `step ${perTok(d("stepNs"))} µs (decode ${perTok(d("decodeNs"))}, sampling ${perTok(d("sampleNs"))}, text+delivery ${perTok(d("textNs"))}, busy flag ${perTok(d("acquireNs"))}, ` +
                `rest ${perTok(d("stepNs") - d("decodeNs") - d("sampleNs") - d("textNs") - d("acquireNs"))}), ` +
                `outside steps ${((ms * 1e6 - d("stepNs")) / 1000 / total).toFixed(1)} µs; steps ${d("steps")}; ` +
                `process CPU time ${((cpu.user + cpu.system) / total).toFixed(1)} µs/token (all threads: compute, loop, JS)`);
        }
    }
    console.log(`${n} stream${n > 1 ? "s" : ""}: ${median(rates).toFixed(0)} tok/s aggregate (runs: ${rates.map((x) => x.toFixed(0)).join(", ")})`);
}
await ctx.dispose();
await model.dispose();
