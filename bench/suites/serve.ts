// Serving benchmark: N concurrent greedy streams on one model, as a server sees them.
// For each concurrency: aggregate generated tokens/s (all streams' tokens over the wall time
// from the first request to the last token), time to first token, and the gaps between a
// stream's tokens as its consumer receives them (p50, p99). Runtimes, same model file, same
// threads, same run:
//   llamafuse       a pool (one context, a slot per stream), streams read in-process
//   llamafuse http  the same pool behind `llamafuse serve`'s app, streamed over loopback SSE
//   node-llama-cpp  one context with a sequence per stream (its own automatic batching)
//   llama-server    llama.cpp's own server from the pinned tree, where built ($LLAMA_SERVER, or
//                   llama-server in $LLAMA_CPP_BIN_DIR), started on a free loopback port with
//                   the same model file and threads, a slot per stream, the same cache size,
//                   continuous batching, flash attention and a unified KV cache (as our
//                   context runs), streamed over loopback SSE like ours
// Every stream has its own random prompt (no prefix shared between streams or rounds), and
// generation ignores end-of-generation so that every stream makes the same number of tokens.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { loadavg } from "node:os";
import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { packageRoot } from "../../src/binding.js";
import { loadModel, type Model } from "../../src/model.js";
import { nglArgs, ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";
import type { Pool } from "../../src/pool.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { DEPTH_MODEL_QUICK } from "./depth.js";
import { defaultBenchModel } from "./forward.js";
import { benchTokens } from "./peer.js";
import { median } from "./stats.js";
import { MODEL_1B, type BenchRow, type SuiteOptions, type SuiteResult } from "./rows.js";

export interface ServeBenchOptions {
    model: string;
    threads: number;
    /** Concurrent streams to measure. @default [1, 4, 8, 16] */
    concurrency?: number[];
    /** Prompt tokens per stream. @default 32 */
    promptTokens?: number;
    /** Tokens each stream generates. @default 64 */
    genTokens?: number;
    /** Rounds per figure (the median round is reported). @default 3 */
    reps?: number;
    noPeer?: boolean;
    /** Skip the HTTP row. @default false */
    noHttp?: boolean;
    /** Also measure a prompt of this many tokens arriving while 4 streams generate (0: skip). @default 0 */
    prefillTokens?: number;
    log?: (line: string) => void;
    /** Layers to offload: ours, node-llama-cpp's and llama-server's (-ngl) (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
}

export interface ServeFigures {
    /** Aggregate generated tokens per second. */
    tokensPerSecond: number;
    ttftP50Ms: number;
    ttftP99Ms: number;
    /**
     * Time per output token: a stream's mean gap between tokens ((last - first) / (n - 1)),
     * p50 over the streams. Single gaps are often 0 where tokens reach the consumer in
     * batches, so the mean gap is the steady-rate figure.
     */
    tpotP50Ms: number;
    /** p99 of every single gap between a stream's tokens: the stalls a reader sees. */
    interTokenP99Ms: number;
}

/** Streams' inter-token gaps without and with a long prompt arriving while they run. */
export interface PrefillInterference {
    streams: number;
    promptTokens: number;
    baselineP99Ms: number;
    withPrefillP99Ms: number;
    baselineMaxMs: number;
    withPrefillMaxMs: number;
}

export interface ServeBenchPoint {
    concurrency: number;
    runtimes: Record<string, ServeFigures | null>;
}

export interface ServeBenchResult {
    model: string;
    threads: number;
    promptTokens: number;
    genTokens: number;
    reps: number;
    points: ServeBenchPoint[];
    /** A long prompt arriving mid-stream (only where asked). */
    prefill?: Record<string, PrefillInterference | null>;
    /** 8 streams' aggregate over 1 stream's, from adjacent rounds (where 1 and 8 are measured). */
    scaling?: Record<string, ScalingFigure>;
    notes: string[];
}

/**
 * Many streams' aggregate tokens/s over one stream's, each ratio taken from a round of each
 * run back to back: this machine's speed drifts by tens of percent over minutes, and the
 * concurrency points are measured minutes apart, so the ratio of their medians mixes that
 * drift into the scaling. Median of the per-round ratios.
 */
export interface ScalingFigure {
    from: number;
    to: number;
    ratio: number;
    ratios: number[];
}

export const OURS = "llamafuse";
export const OURS_HTTP = "llamafuse http";
export const PEER = "node-llama-cpp";
export const LLAMA_SERVER = "llama-server";

/** One stream's arrival times (ms, from its request). */
interface StreamTimes {
    start: number;
    arrivals: number[];
}

/** A runtime's way of running one greedy stream of `gen` tokens after `prompt` (stream `i` of the round). */
type StreamRunner = ((prompt: number[], gen: number, i: number) => Promise<StreamTimes>) & {
    /**
     * Waits, outside the timed round, until the runtime does no more work for it: a stream
     * left with `break` may still be evaluating in the background, which would otherwise
     * land on the next runtime's round (seen as ~2 s more TTFT on the 1B model after
     * node-llama-cpp's rounds).
     */
    settle?: () => Promise<void>;
};

function quantile(xs: number[], q: number): number {
    if (xs.length === 0) return NaN;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

function figures(streams: StreamTimes[], wallMs: number): ServeFigures {
    const ttft: number[] = [];
    const gaps: number[] = [];
    const tpot: number[] = [];
    let tokens = 0;
    for (const s of streams) {
        const a = s.arrivals;
        tokens += a.length;
        if (a.length > 0) ttft.push(a[0]! - s.start);
        if (a.length > 1) tpot.push((a[a.length - 1]! - a[0]!) / (a.length - 1));
        for (let i = 1; i < a.length; i++) gaps.push(a[i]! - a[i - 1]!);
    }
    return {
        tokensPerSecond: tokens / (wallMs / 1000),
        ttftP50Ms: quantile(ttft, 0.5),
        ttftP99Ms: quantile(ttft, 0.99),
        tpotP50Ms: quantile(tpot, 0.5),
        interTokenP99Ms: quantile(gaps, 0.99),
    };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `streams` streams of `gen` tokens, alone and then with a `promptTokens`-token prompt sent a
 * quarter of the way through: the streams' inter-token p99 and largest gap in each case
 * (medians over `reps` rounds). A scheduler that evaluates a long prompt in one piece stalls
 * every stream for its whole prefill; chunked prefill keeps the gaps short.
 */
async function prefillInterference(run: StreamRunner, intrude: (prompt: number[]) => Promise<void>, o: { streams: number; gen: number; promptTokens: number; reps: number; vocab: number }): Promise<PrefillInterference> {
    const round = async (rep: number, withPrefill: boolean, quarterMs: number) => {
        const prompts = Array.from({ length: o.streams }, (_, i) => [...benchTokens(32, o.vocab, 7000 + rep * 100 + i)]);
        const t0 = performance.now();
        const all = Promise.all(prompts.map((p, i) => run(p, o.gen, i)));
        if (withPrefill) {
            await sleep(quarterMs);
            await intrude([...benchTokens(o.promptTokens, o.vocab, 9000 + rep)]);
        }
        const streams = await all;
        const gaps = streams.flatMap((s) => s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]!));
        return { wall: performance.now() - t0, p99: quantile(gaps, 0.99), max: Math.max(...gaps) };
    };
    const warm = await round(0, false, 0);
    const base: { p99: number; max: number }[] = [];
    const withP: { p99: number; max: number }[] = [];
    for (let rep = 1; rep <= o.reps; rep++) {
        base.push(await round(rep, false, 0));
        withP.push(await round(rep, true, warm.wall / 4));
    }
    return {
        streams: o.streams, promptTokens: o.promptTokens,
        baselineP99Ms: median(base.map((r) => r.p99)), withPrefillP99Ms: median(withP.map((r) => r.p99)),
        baselineMaxMs: median(base.map((r) => r.max)), withPrefillMaxMs: median(withP.map((r) => r.max)),
    };
}

function poolRunner(pool: Pool, bos: number | null): StreamRunner {
    return async (prompt, gen) => {
        const start = performance.now();
        const arrivals: number[] = [];
        const tokens = bos === null ? prompt : [bos, ...prompt];
        for await (const _ of pool.generate(tokens, { temperature: 0, maxTokens: gen, stopOnEog: false })) arrivals.push(performance.now());
        return { start, arrivals };
    };
}

/** Streams an OpenAI-style /v1/completions request and times each SSE event that carries text or a token. */
function httpRunner(base: string, body: (prompt: number[], gen: number) => Record<string, unknown>): StreamRunner {
    return async (prompt, gen) => {
        const start = performance.now();
        const arrivals: number[] = [];
        const res = await fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body(prompt, gen)) });
        if (!res.ok || !res.body) throw new Error(`${base}: HTTP ${res.status} ${await res.text()}`);
        const decoder = new TextDecoder();
        let buf = "";
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            buf += decoder.decode(chunk, { stream: true });
            let at: number;
            while ((at = buf.indexOf("\n\n")) >= 0) {
                const event = buf.slice(0, at);
                buf = buf.slice(at + 2);
                if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
                const data = JSON.parse(event.slice(6)) as { choices?: { text?: string; finish_reason?: string | null }[]; content?: string; stop?: boolean };
                // ours and OpenAI's shape: choices[0].text; llama-server's /completion shape: content.
                const text = data.choices?.[0]?.text ?? data.content;
                const final = (data.choices?.[0]?.finish_reason ?? null) !== null || data.stop === true;
                if (!final || (text !== undefined && text !== "")) arrivals.push(performance.now());
            }
        }
        return { start, arrivals };
    };
}

/** Stream i runs on sequence i of the context, emptied first (each round's prompts are new). */
function peerRunner(context: Awaited<ReturnType<LlamaModel["createContext"]>>, bos: number | null, count = context.sequencesLeft): StreamRunner {
    const seqs = Array.from({ length: count }, () => context.getSequence());
    const run: StreamRunner = async (prompt, gen, i) => {
        const seq = seqs[i]!;
        await seq.clearHistory();
        const start = performance.now();
        const arrivals: number[] = [];
        const tokens = bos === null ? prompt : [bos, ...prompt];
        for await (const _ of seq.evaluate(tokens as never, { temperature: 0 })) {
            arrivals.push(performance.now());
            if (arrivals.length >= gen) break;
        }
        return { start, arrivals };
    };
    // Clearing waits for whatever evaluation a left stream still has queued.
    run.settle = async () => {
        for (const seq of seqs) await seq.clearHistory();
        await new Promise((r) => setTimeout(r, 100));
    };
    return run;
}

export function findLlamaServer(): string | null {
    const dirs = [process.env.LLAMA_CPP_BIN_DIR, process.env.LLAMAFUSE_LLAMA_TOOLS, path.join(packageRoot, "build", "bin"), path.join(packageRoot, "deps", "llama.cpp", "build", "bin")].filter((d): d is string => !!d);
    const candidates = [process.env.LLAMA_SERVER, ...dirs.map((d) => path.join(d, "llama-server"))].filter((p): p is string => !!p);
    return candidates.find((p) => existsSync(p)) ?? null;
}

/** A loopback port nobody listens on now (the OS picks it; llama-server then binds it). */
function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = createNetServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as { port: number }).port;
            srv.close(() => resolve(port));
        });
    });
}

/** The llama-server command line: the same settings as our pool's context (see the header). */
export function llamaServerArgs(model: string, port: number, threads: number, slots: number, ctxPerSlot: number, gpuLayers?: BenchGpuLayers): string[] {
    return [
        "-m", model, "--host", "127.0.0.1", "--port", String(port),
        "-t", String(threads), "-tb", String(threads),
        "-np", String(slots), "-c", String(ctxPerSlot * slots), "--kv-unified", "-cb", "-fa", "on",
        "-b", "512", "-ub", "512", "--no-webui", "-lv", "0", ...nglArgs(gpuLayers, "auto"),
    ];
}

async function startLlamaServer(bin: string, model: string, threads: number, slots: number, ctxPerSlot: number, gpuLayers?: BenchGpuLayers): Promise<{ base: string; child: ChildProcess }> {
    const port = await freePort();
    const child = spawn(bin, llamaServerArgs(model, port, threads, slots, ctxPerSlot, gpuLayers), { stdio: "ignore" });
    const base = `http://127.0.0.1:${port}`;
    const t0 = Date.now();
    for (;;) {
        if (child.exitCode !== null) throw new Error(`llama-server exited with code ${child.exitCode}`);
        try {
            if ((await fetch(`${base}/health`)).ok) return { base, child };
        } catch {
            // not up yet
        }
        if (Date.now() - t0 > 60_000) {
            child.kill("SIGKILL");
            throw new Error("llama-server did not come up in 60 s");
        }
        await new Promise((r) => setTimeout(r, 200));
    }
}

/**
 * Runs every runtime's round in turn (in a rotating order), `reps` times after a warm-up
 * round, so that a change in the machine's load hits all of them alike; each runtime's round
 * with the median tokens/s is reported.
 */
async function measureInterleaved(runners: Record<string, StreamRunner>, n: number, o: Required<Pick<ServeBenchOptions, "promptTokens" | "genTokens" | "reps">>, vocab: number): Promise<Record<string, ServeFigures>> {
    const rounds: Record<string, ServeFigures[]> = Object.fromEntries(Object.keys(runners).map((k) => [k, []]));
    for (let rep = 0; rep <= o.reps; rep++) {
        // The order rotates every round: a runtime that leaves work behind (threads spinning
        // down, a peer's queued evaluation) does not always land on the same successor.
        const order = Object.entries(runners).map((e, k) => [k, e] as const);
        for (let r = 0; r < rep % order.length; r++) order.push(order.shift()!);
        for (const [k, [name, run]] of order) {
            // Prompts differ between rounds, streams and runtimes: no prefix is ever cached
            // (ours in-process and over HTTP share one pool, whose slots keep their prompts).
            const prompts = Array.from({ length: n }, (_, i) => [...benchTokens(o.promptTokens, vocab, rep * 100_000 + k * 1000 + i + 1)]);
            const t0 = performance.now();
            const streams = await Promise.all(prompts.map((p, i) => run(p, o.genTokens, i)));
            const wall = performance.now() - t0;
            if (rep > 0) rounds[name]!.push(figures(streams, wall));
            await run.settle?.();
        }
    }
    return Object.fromEntries(Object.entries(rounds).map(([name, rs]) => {
        const mid = median(rs.map((r) => r.tokensPerSecond));
        return [name, rs.find((r) => r.tokensPerSecond === mid) ?? rs[Math.floor(rs.length / 2)]!];
    }));
}

/**
 * For each runtime, `reps` rounds (after a warm-up) of `from` streams and of `to` streams back
 * to back (which goes first alternates), runtimes in a rotating order; the ratio of the two
 * rounds' aggregate tokens/s, per round.
 */
async function measureScaling(runners: Record<string, StreamRunner>, from: number, to: number, o: Required<Pick<ServeBenchOptions, "promptTokens" | "genTokens" | "reps">>, vocab: number): Promise<Record<string, ScalingFigure>> {
    const ratios: Record<string, number[]> = Object.fromEntries(Object.keys(runners).map((k) => [k, []]));
    const round = async (run: StreamRunner, n: number, seed: number) => {
        const prompts = Array.from({ length: n }, (_, i) => [...benchTokens(o.promptTokens, vocab, seed + i + 1)]);
        const t0 = performance.now();
        const streams = await Promise.all(prompts.map((p, i) => run(p, o.genTokens, i)));
        const tps = figures(streams, performance.now() - t0).tokensPerSecond;
        await run.settle?.();
        return tps;
    };
    for (let rep = 0; rep <= o.reps; rep++) {
        const order = Object.entries(runners).map((e, k) => [k, e] as const);
        for (let r = 0; r < rep % order.length; r++) order.push(order.shift()!);
        for (const [k, [name, run]] of order) {
            // prompts never seen before (a seed range apart from measureInterleaved's)
            const seed = 50_000_000 + rep * 100_000 + k * 1000;
            let a: number, b: number;
            if (rep % 2 === 0) {
                a = await round(run, from, seed);
                b = await round(run, to, seed + 100);
            } else {
                b = await round(run, to, seed + 100);
                a = await round(run, from, seed);
            }
            if (rep > 0) ratios[name]!.push(b / a);
        }
    }
    return Object.fromEntries(Object.entries(ratios).map(([name, rs]) => [name, { from, to, ratio: median(rs), ratios: rs }]));
}

export async function runServeBench(o: ServeBenchOptions): Promise<ServeBenchResult> {
    const conc = o.concurrency ?? [1, 4, 8, 16];
    const sizes = { promptTokens: o.promptTokens ?? 32, genTokens: o.genTokens ?? 64, reps: o.reps ?? 3 };
    const maxStreams = Math.max(...conc);
    const ctxPerSlot = sizes.promptTokens + sizes.genTokens + 16;
    const log = o.log ?? (() => {});
    const notes: string[] = [];
    const points: ServeBenchPoint[] = conc.map((c) => ({ concurrency: c, runtimes: {} }));
    const prefill: Record<string, PrefillInterference | null> = {};
    let scaling: Record<string, ScalingFigure> | undefined;
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    const load0 = loadavg();
    try {
        // Ours: a pool in-process, and the same pool behind the HTTP app.
        const model: Model = await loadModel(o.model, ourGpuLayers(o.gpuLayers));
        cleanup.push(() => model.dispose());
        const vocab = model.info.vocabSize;
        const bos = model.info.bos >= 0 ? model.info.bos : null;
        const withBos = (prompt: number[]) => (bos === null ? prompt : [bos, ...prompt]);
        const pool = await model.createPool({ slots: maxStreams, contextSize: ctxPerSlot, threads: o.threads });
        cleanup.push(() => pool.dispose());
        const fixed: Record<string, StreamRunner> = { [OURS]: poolRunner(pool, bos) };
        if (!o.noHttp) {
            const { createServer } = await import("../../src/server/index.js");
            const app = await createServer({ pool });
            await app.listen({ host: "127.0.0.1", port: 0 });
            cleanup.push(() => app.close());
            const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
            // The stop-on-EOG switch is not an OpenAI field: logit_bias bans EOS instead, so every stream runs to max_tokens.
            const ban = model.info.eos >= 0 ? { logit_bias: { [model.info.eos]: -100 } } : {};
            fixed[OURS_HTTP] = httpRunner(base, (prompt, gen) => ({ prompt: withBos(prompt), max_tokens: gen, temperature: 0, stream: true, ...ban }));
        }
        const bin = findLlamaServer();
        if (bin) {
            const { base, child } = await startLlamaServer(bin, o.model, o.threads, maxStreams, ctxPerSlot, o.gpuLayers);
            cleanup.push(() => child.kill("SIGTERM"));
            fixed[LLAMA_SERVER] = httpRunner(base, (prompt, gen) => ({ prompt: withBos(prompt), max_tokens: gen, temperature: 0, stream: true, ignore_eos: true, cache_prompt: true }));
            notes.push(`${LLAMA_SERVER}: ${bin} ${llamaServerArgs(path.basename(o.model), 0, o.threads, maxStreams, ctxPerSlot, o.gpuLayers).join(" ")} (port: a free one), streamed /v1/completions over loopback like ours`);
            notes.push(`${LLAMA_SERVER}: from this tree it has our patches to ggml's own kernels (AMX) but not the addon's kernels (fused attention; the Q4_0, Q4_K, Q5_K, Q6_K and Q8_0 batch matmuls on AVX-512 VNNI CPUs without AMX)`);
        } else {
            notes.push(`${LLAMA_SERVER}: not built here (set LLAMA_CPP_BIN_DIR to a folder holding llama-server, or LLAMA_SERVER to its path)`);
        }
        let peerModel: LlamaModel | null = null;
        if (!o.noPeer) {
            try {
                const { getLlama } = await import("node-llama-cpp");
                const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: "error" as never });
                cleanup.push(() => llama.dispose());
                peerModel = await llama.loadModel({ modelPath: o.model, ...peerGpuLayers(o.gpuLayers) });
                const pm = peerModel;
                cleanup.push(() => pm.dispose());
                notes.push(`${PEER}: one context with a sequence per stream (sequence.evaluate at temperature 0; it batches the sequences itself), stopped after ${sizes.genTokens} tokens`);
                // Its prebuilt picks its own CPU kernels (on a CPU with AMX, its Q4_0/Q8_0 matmuls
                // run on AMX tiles, which this build leaves off): the single-stream row shows that
                // difference, and the 8-streams-over-1 row (ours beside its own) the batching alone.
                notes.push(`${PEER}: its prebuilt CPU kernels may differ from this build's (e.g. AMX); compare the 8 streams / 1 stream rows for batching alone`);
            } catch (err) {
                notes.push(`${PEER} unavailable: ${(err as Error).message.split("\n")[0]}`);
            }
        }

        for (const p of points) {
            log(`${p.concurrency} streams: ${[...Object.keys(fixed), ...(peerModel ? [PEER] : [])].join(", ")}, in alternation`);
            const runners = { ...fixed };
            const context = peerModel ? await peerModel.createContext({ contextSize: ctxPerSlot * p.concurrency, sequences: p.concurrency, threads: o.threads, batchSize: 512 }) : null;
            try {
                if (context) runners[PEER] = peerRunner(context, bos);
                Object.assign(p.runtimes, await measureInterleaved(runners, p.concurrency, sizes, vocab));
            } finally {
                await context?.dispose();
            }
        }

        if (conc.includes(1) && conc.includes(8)) {
            log(`8 streams / 1 stream: ${[...Object.keys(fixed), ...(peerModel ? [PEER] : [])].join(", ")}, 1 and 8 streams in adjacent rounds`);
            const runners = { ...fixed };
            const context = peerModel ? await peerModel.createContext({ contextSize: ctxPerSlot * 8, sequences: 8, threads: o.threads, batchSize: 512 }) : null;
            try {
                if (context) runners[PEER] = peerRunner(context, bos);
                scaling = await measureScaling(runners, 1, 8, sizes, vocab);
            } finally {
                await context?.dispose();
            }
        }

        if (o.prefillTokens) {
            log(`a ${o.prefillTokens}-token prompt arriving while 4 streams generate`);
            const big = await model.createPool({ slots: 5, contextSize: o.prefillTokens + 256, threads: o.threads });
            try {
                prefill[OURS] = await prefillInterference(poolRunner(big, bos), async (prompt) => {
                    for await (const _ of big.generate(prompt, { temperature: 0, maxTokens: 1 })) break;
                }, { streams: 4, gen: 96, promptTokens: o.prefillTokens, reps: sizes.reps, vocab });
            } finally {
                await big.dispose();
            }
            if (peerModel) {
                const context = await peerModel.createContext({ contextSize: (o.prefillTokens + 256) * 5, sequences: 5, threads: o.threads, batchSize: 512 });
                try {
                    const intruder = context.getSequence();
                    prefill[PEER] = await prefillInterference(peerRunner(context, bos), async (prompt) => {
                        await intruder.clearHistory();
                        for await (const _ of intruder.evaluate(prompt as never, { temperature: 0 })) break;
                    }, { streams: 4, gen: 96, promptTokens: o.prefillTokens, reps: sizes.reps, vocab });
                } finally {
                    await context.dispose();
                }
            }
        }
    } finally {
        for (const f of cleanup.reverse()) await f();
    }
    notes.push(`${OURS}: a pool with ${maxStreams} slots of ${ctxPerSlot} tokens, streams read in-process; ${OURS_HTTP}: the same pool behind the server app, streamed over loopback SSE; runtimes alternate round by round`);
    const load1 = loadavg();
    notes.push(`load average (1 min) ${load0[0]!.toFixed(1)} at the start, ${load1[0]!.toFixed(1)} at the end (5 min: ${load1[1]!.toFixed(1)})`);
    if (scaling) notes.push("8 streams / 1 stream rows: the median of per-round ratios, each from a 1-stream and an 8-stream round run back to back");
    return { model: o.model, threads: o.threads, ...sizes, points, ...(o.prefillTokens ? { prefill } : {}), ...(scaling ? { scaling } : {}), notes };
}

// ---- the `llamafuse bench serve` suite ----------------------------------------------------------

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? null : v);

/** Rows: in-process (ours vs node-llama-cpp) and over HTTP (ours vs llama-server where built). */
function suiteRows(res: ServeBenchResult): BenchRow[] {
    const rows: BenchRow[] = [];
    const model = path.basename(res.model);
    const row = (test: string, unit: string, ours: number | null | undefined, peer: number | null | undefined, higherIsBetter: boolean): void => {
        if (ours === null || ours === undefined || Number.isNaN(ours)) return;
        const p = peer === undefined || peer === null || Number.isNaN(peer) ? null : peer;
        rows.push({ suite: "serve", test, model, threads: res.threads, unit, llamafuse: ours, nodeLlamaCpp: p, ratio: p === null || ours === 0 ? null : higherIsBetter ? ours / p : p / ours, llamaBench: null });
    };
    for (const pt of res.points) {
        const c = pt.concurrency;
        const ours = pt.runtimes[OURS], peer = pt.runtimes[PEER], http = pt.runtimes[OURS_HTTP], ls = pt.runtimes[LLAMA_SERVER];
        row(`${c} streams: aggregate`, "tokens/s", ours?.tokensPerSecond, peer?.tokensPerSecond, true);
        row(`${c} streams: TTFT p50`, "ms", ms(ours?.ttftP50Ms), ms(peer?.ttftP50Ms), false);
        row(`${c} streams: time per token p50`, "ms", ms(ours?.tpotP50Ms), ms(peer?.tpotP50Ms), false);
        row(`${c} streams: inter-token p99`, "ms", ms(ours?.interTokenP99Ms), ms(peer?.interTokenP99Ms), false);
        // Over HTTP the peer column is llama-server (when built), not node-llama-cpp.
        row(`${c} streams over HTTP: aggregate${ls ? " (peer: llama-server)" : ""}`, "tokens/s", http?.tokensPerSecond, ls?.tokensPerSecond, true);
        row(`${c} streams over HTTP: TTFT p50${ls ? " (peer: llama-server)" : ""}`, "ms", ms(http?.ttftP50Ms), ms(ls?.ttftP50Ms), false);
    }
    const pf = res.prefill?.[OURS], pp = res.prefill?.[PEER];
    if (pf) {
        const label = `4 streams + a ${pf.promptTokens}-token prompt: inter-token p99`;
        row(label, "ms", pf.withPrefillP99Ms, pp?.withPrefillP99Ms, false);
        row(`${label} / without it`, "x", pf.withPrefillP99Ms / pf.baselineP99Ms, pp ? pp.withPrefillP99Ms / pp.baselineP99Ms : null, false);
        row(`4 streams + a ${pf.promptTokens}-token prompt: largest gap`, "ms", pf.withPrefillMaxMs, pp?.withPrefillMaxMs, false);
    }
    // Scaling: 8 streams' aggregate over one stream's, ours beside the peer's (in-process:
    // node-llama-cpp; over HTTP: llama-server).
    const at = (c: number, name: string) => res.points.find((p) => p.concurrency === c)?.runtimes[name]?.tokensPerSecond;
    const scale = (name: string) => {
        const adjacent = res.scaling?.[name]?.ratio;
        if (adjacent !== undefined) return adjacent;
        const one = at(1, name), eight = at(8, name);
        return one && eight ? eight / one : null;
    };
    row("8 streams / 1 stream (aggregate)", "x", scale(OURS), scale(PEER), true);
    row(`8 streams / 1 stream over HTTP (aggregate)${at(8, LLAMA_SERVER) ? " (peer: llama-server)" : ""}`, "x", scale(OURS_HTTP), scale(LLAMA_SERVER), true);
    return rows;
}

export async function serveSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const runs: { model: string; sizes: Partial<ServeBenchOptions> }[] = [];
    const stories = o.model ?? defaultBenchModel();
    if (o.quick) {
        runs.push({ model: stories ?? (await cachedSynthModel(DEPTH_MODEL_QUICK, { dir: o.cacheDir, name: "bench-tiny" })), sizes: { concurrency: [1, 4], genTokens: 16, promptTokens: 16, reps: 1 } });
    } else {
        if (stories) runs.push({ model: stories, sizes: { prefillTokens: 2048 } });
        if (!o.model) {
            const big = await cachedSynthModel(MODEL_1B, { dir: o.cacheDir, name: "bench-1b", onWrite: (f) => o.log(`writing ${f} (random weights, once)`) });
            runs.push({ model: big, sizes: { genTokens: 16, promptTokens: 16, reps: 2 } });
        }
    }
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const details: ServeBenchResult[] = [];
    for (const r of runs) {
        const res = await runServeBench({ model: r.model, threads: o.threads, noPeer: o.noPeer, log: o.log, gpuLayers: o.gpuLayers, ...r.sizes });
        details.push(res);
        rows.push(...suiteRows(res));
        notes.push(...res.notes.map((n) => `${path.basename(r.model)}: ${n}`));
        notes.push(`${path.basename(r.model)}: ${res.promptTokens} prompt tokens and ${res.genTokens} generated per stream, median of ${res.reps} rounds; ms rows: ratio = peer / ours`);
    }
    return { suite: "serve", rows, notes: [...new Set(notes)], detail: details };
}
