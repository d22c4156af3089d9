// The attention kernel benchmark: llamafuse's fused CPU kernel against ggml's, on identical
// tensors in one process (same ggml graph, same threadpool; only the fused switch differs).
// Decode (one token, every key visible) and prefill (512 tokens appended at the given depth,
// causal mask). Each shape gets its own random caches, several distinct per run (one op per
// "layer") when one would fit in the last-level cache, so K/V always come from memory.
// Times are measured natively around ggml_graph_compute and divided by the number of ops;
// rows report the median of the repetitions. The machine's read bandwidth is measured in the
// same run (threads summing a 512 MiB buffer) to give each row's bandwidth fraction.
import { AttentionBenchSession, type AttentionKvType, kvRowBytes, measureReadBandwidth } from "../../src/attention.js";

export type AttentionPhase = "decode" | "prefill";

export interface AttentionBenchOptions {
    /** @default [64, 128] */
    headDims?: number[];
    /** Query heads per KV head. @default [1, 4, 8] */
    gqa?: number[];
    /** KV depth before the new tokens. @default [4096, 16384, 32768] */
    depths?: number[];
    /** @default ["f16", "q8_0"] */
    kvTypes?: Array<Exclude<AttentionKvType, "f32">>;
    /** @default ["decode", "prefill"] */
    phases?: AttentionPhase[];
    /** Threads of the ggml threadpool (both kernels). @default 2 */
    threads?: number;
    /** KV heads for decode (prefill uses 1 to stay within minutes). @default 8 */
    headsKv?: number;
    /** Tokens per prefill op. @default 512 */
    prefillTokens?: number;
    /** Timed repetitions per kernel (after one warm-up): decode / prefill. @default [5, 2] */
    reps?: [number, number];
    /**
     * wall: elapsed time. cpu: process CPU time per thread (use with threads: 1 on a machine
     * shared with other load, where wall times swing several-fold). @default "wall"
     */
    clock?: "wall" | "cpu";
    /** Called after each row (progress). */
    onRow?: (row: AttentionBenchRow) => void;
}

export interface AttentionBenchRow {
    headDim: number;
    gqa: number;
    depth: number;
    kvType: string;
    phase: AttentionPhase;
    /** Median µs per op, ggml's kernel. */
    ggmlUs: number;
    /** Median µs per op, llamafuse's kernel. */
    fusedUs: number;
    /** ggmlUs / fusedUs. */
    ratio: number;
    /** K+V bytes of the op / fusedUs, in GB/s (each byte counted once). */
    readGBs: number;
    /** readGBs / the read bandwidth measured in this run. */
    bandwidthFraction: number;
    threads: number;
}

export interface AttentionBenchResult {
    threads: number;
    clock: "wall" | "cpu";
    /** Median read bandwidth measured in this run, GB/s. */
    bandwidthGBs: number;
    rows: AttentionBenchRow[];
}

export const QUICK_OPTIONS: AttentionBenchOptions = {
    headDims: [128], gqa: [1, 4], depths: [4096], prefillTokens: 128, reps: [3, 1],
};

const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// a repetition pair slower than this is not repeated (seconds-long ops vary little)
const SLOW_PAIR_US = 2e6;

// enough distinct caches that one run reads at least 4× a 32 MiB last-level cache
const WORKING_SET = 128 << 20;

export async function runAttentionBenchDetailed(options: AttentionBenchOptions = {}): Promise<AttentionBenchResult> {
    const o = {
        headDims: [64, 128], gqa: [1, 4, 8], depths: [4096, 16384, 32768],
        kvTypes: ["f16", "q8_0"] as const, phases: ["decode", "prefill"] as AttentionPhase[],
        threads: 2, headsKv: 8, prefillTokens: 512, reps: [5, 2] as [number, number], clock: "wall" as const, ...options,
    };
    const bw = median(await measureReadBandwidth(512 << 20, o.threads, 5));
    const rows: AttentionBenchRow[] = [];
    for (const phase of o.phases) {
        for (const kvType of o.kvTypes) {
            for (const headDim of o.headDims) {
                for (const gqa of o.gqa) {
                    for (const depth of o.depths) {
                        const decode = phase === "decode";
                        const nTokens = decode ? 1 : o.prefillTokens;
                        const nHeadKv = decode ? o.headsKv : 1;
                        const nKv = depth + (decode ? 0 : nTokens);
                        const kvBytes = (kvRowBytes(kvType, headDim) * 2) * nHeadKv * nKv;
                        const layers = Math.min(8, Math.max(1, Math.ceil(WORKING_SET / kvBytes)));
                        const session = await AttentionBenchSession.create({
                            DK: headDim, DV: headDim, nTokens, nHead: nHeadKv * gqa, nHeadKv, nKv, nStream: 1, kvType,
                            maskRows: decode ? 0 : nTokens, maskHeads: 1, sinks: false,
                            scale: 1 / Math.sqrt(headDim), maxBias: 0, softcap: 0, layers, threads: o.threads,
                        });
                        try {
                            // warm-up (first touch of pages, thread start), then the two kernels
                            // alternate so that noise from other load hits both alike
                            const reps = decode ? o.reps[0] : o.reps[1];
                            if (decode) {
                                await session.run("fused", 1);
                                await session.run("ggml", 1);
                            }
                            const fused: number[] = [];
                            const ggml: number[] = [];
                            for (let i = 0; i < reps; i++) {
                                fused.push(...(await session.run("fused", 1, o.clock)));
                                ggml.push(...(await session.run("ggml", 1, o.clock)));
                                // ggml's q8_0 prefill takes seconds per op at depth: one pair is
                                // enough there, and keeps a full run within minutes
                                if (ggml[0]! + fused[0]! > SLOW_PAIR_US) break;
                            }
                            const fusedUs = median(fused);
                            const ggmlUs = median(ggml);
                            const readGBs = kvBytes / fusedUs / 1e3;
                            const row: AttentionBenchRow = {
                                headDim, gqa, depth, kvType, phase, ggmlUs, fusedUs, ratio: ggmlUs / fusedUs,
                                readGBs, bandwidthFraction: readGBs / bw, threads: o.threads,
                            };
                            rows.push(row);
                            o.onRow?.(row);
                        } finally {
                            session.dispose();
                        }
                    }
                }
            }
        }
    }
    return { threads: o.threads, clock: o.clock, bandwidthGBs: bw, rows };
}

/** The rows of the attention benchmark (used by `llamafuse bench attention`). */
export async function runAttentionBench(options: AttentionBenchOptions = {}): Promise<AttentionBenchRow[]> {
    return (await runAttentionBenchDetailed(options)).rows;
}

export function formatAttentionRow(r: AttentionBenchRow): string {
    const us = (x: number) => x.toFixed(x < 100 ? 1 : 0).padStart(9);
    return [
        r.phase.padEnd(8), r.kvType.padEnd(5), String(r.headDim).padStart(4), String(r.gqa).padStart(3),
        String(r.depth).padStart(6), us(r.ggmlUs), us(r.fusedUs), `${r.ratio.toFixed(2)}x`.padStart(8),
        r.readGBs.toFixed(2).padStart(7), `${(100 * r.bandwidthFraction).toFixed(0)}%`.padStart(5),
    ].join(" ");
}

export const ATTENTION_TABLE_HEADER =
    "phase    kv      D   G  depth   ggml µs  fused µs    ratio    GB/s   %bw";
