// Child of bench/prebuilt.bench.ts: one addon ($LLAMAFUSE_ADDON) in its own process, timing pp
// (one forward of `pp` tokens) and tg (`tg` single-token forwards after a one-token prompt) on
// `model`, `reps` times after a warm-up. Prints one JSON line of per-rep tokens/s, by the wall
// clock and by the process's CPU time (with one thread, the steadier measure on a shared machine:
// other processes' load lengthens the wall time, much less the CPU time the work takes).
// Usage: node bench/prebuilt-child.mjs <entry: file URL of llamafuse's index.js> <model> <threads> <reps>
const [entry, model, threadsArg, repsArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const reps = Number(repsArg);
const PP = 128;
const TG = 32;
const { loadModel, addonInfo } = await import(entry);
const m = await loadModel(model);
try {
    const ctx = await m.createContext({ contextSize: 512, batchSize: 512, threads });
    const vocab = m.info.vocabSize;
    const prompt = Array.from({ length: PP }, (_, i) => (1 + i * 7919) % vocab);
    const pp = [];
    const tg = [];
    const ppCpu = [];
    const tgCpu = [];
    const cpuMs = (u) => (u.user + u.system) / 1000;
    for (let r = -1; r < reps; r++) {
        await ctx.kv.clear();
        let t0 = performance.now();
        let c0 = process.cpuUsage();
        await ctx.forward({ sequence: 0, tokens: prompt, logits: "last" });
        const ppMs = performance.now() - t0;
        const ppCpuMs = cpuMs(process.cpuUsage(c0));
        await ctx.kv.clear();
        await ctx.forward({ sequence: 0, tokens: [prompt[0]], logits: "last" });
        t0 = performance.now();
        c0 = process.cpuUsage();
        for (let i = 0; i < TG; i++) await ctx.forward({ sequence: 0, tokens: [prompt[(i + 1) % PP]], logits: "last" });
        const tgMs = performance.now() - t0;
        const tgCpuMs = cpuMs(process.cpuUsage(c0));
        if (r < 0) continue; // warm-up
        pp.push((PP * 1000) / ppMs);
        tg.push((TG * 1000) / tgMs);
        ppCpu.push((PP * 1000) / ppCpuMs);
        tgCpu.push((TG * 1000) / tgCpuMs);
    }
    // addonInfo() is missing from library builds older than the prebuilt levels
    const addon = addonInfo ? addonInfo() : { path: process.env.LLAMAFUSE_ADDON, build: "unknown", variant: null };
    console.log(JSON.stringify({ addon, threads, pp, tg, ppCpu, tgCpu }));
} finally {
    await m.dispose();
}
