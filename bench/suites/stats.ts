// Small helpers shared by the benchmarks: medians of repeated runs and a plain table.
import type { Bench as TinyBench } from "tinybench";
import { LlamaError } from "../../src/errors.js";

/**
 * tinybench is a devDependency (benchmarks run from a development checkout, beside
 * node-llama-cpp, also a devDependency): loaded when a benchmark runs, so that the CLI of an
 * installed package starts without it.
 */
async function loadBench(): Promise<typeof TinyBench> {
    try {
        return (await import("tinybench")).Bench;
    } catch (err) {
        throw new LlamaError("ERR_UNSUPPORTED", "benchmarks need llamafuse's development dependencies (tinybench, node-llama-cpp): run them from a development checkout after npm ci", { cause: err });
    }
}

export function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Times `fn` with tinybench and returns the median milliseconds per call. `iterations` is
 * the minimum number of runs; tinybench keeps sampling until `timeMs` has passed too.
 */
export async function medianMs(name: string, fn: () => Promise<unknown> | unknown, opts: { iterations?: number; timeMs?: number; warmup?: boolean } = {}): Promise<number> {
    const Bench = await loadBench();
    const bench = new Bench({ name, iterations: opts.iterations ?? 5, time: opts.timeMs ?? 0, warmup: opts.warmup ?? true, warmupIterations: 1, warmupTime: 0 });
    bench.add(name, fn);
    await bench.run();
    const result = bench.tasks[0]!.result as { latency?: { p50: number }; error?: unknown; state?: string };
    if (!result.latency) throw new Error(`benchmark ${name} failed: ${String(result.error ?? result.state)}`);
    return result.latency.p50;
}

export function formatTable(rows: Record<string, string | number>[]): string {
    if (rows.length === 0) return "(no rows)";
    const cols = Object.keys(rows[0]!);
    const cell = (v: string | number) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) : v);
    const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(cell(r[c]!)).length)));
    const line = (vals: string[]) => vals.map((v, i) => v.padStart(widths[i]!)).join("  ");
    return [line(cols), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(cols.map((c) => String(cell(r[c]!)))))].join("\n");
}

/**
 * Median milliseconds per call of several tasks measured in alternation: each round runs
 * every task once (a tinybench run of one iteration each), so a change in the machine's load
 * hits all of them alike instead of whichever happened to run then. One warm-up round first.
 */
export async function interleavedMedianMs(tasks: Record<string, () => Promise<unknown> | unknown>, rounds: number): Promise<Record<string, number>> {
    const samples = await interleavedSamplesMs(tasks, rounds);
    return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

/** As interleavedMedianMs, but every timed round's milliseconds (for pooling several runs). */
export async function interleavedSamplesMs(tasks: Record<string, () => Promise<unknown> | unknown>, rounds: number): Promise<Record<string, number[]>> {
    const Bench = await loadBench();
    const bench = new Bench({ name: "interleaved", iterations: 1, time: 0, warmup: false });
    for (const [name, fn] of Object.entries(tasks)) bench.add(name, fn);
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(tasks).map((k) => [k, []]));
    for (let r = 0; r <= rounds; r++) {
        // A tinybench task runs once and then keeps its result: without the reset every
        // later round would return the first round's figures without running anything.
        bench.reset();
        await bench.run();
        if (r === 0) continue; // warm-up
        for (const task of bench.tasks) {
            const result = task.result as { latency?: { mean: number }; error?: unknown; state?: string };
            if (!result.latency) throw new Error(`benchmark ${task.name} failed: ${String(result.error ?? result.state)}`);
            samples[task.name]!.push(result.latency.mean);
        }
    }
    return samples;
}
