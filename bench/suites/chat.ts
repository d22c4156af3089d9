// Chat benchmark: time to first token of a new turn after ~2K tokens of history. Three ways:
// our ChatSession reusing the cached prefix, our ChatSession with the cache cleared before
// each turn (everything re-evaluated), and node-llama-cpp's LlamaChatSession (same model file,
// same template through its JinjaTemplateChatWrapper, same threads), in alternating rounds.
// Time to first token is from the call to the first streamed text (our first delta; the peer's
// first onTextChunk), as a chat UI sees it; the whole one-token turn is reported beside it.
import { readFileSync } from "node:fs";
import path from "node:path";
import { loadModel } from "../../src/model.js";
import { ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";
import type { ChatMessage } from "../../src/chat/messages.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { defaultVocabDir } from "../../src/synth/index.js";
import { interleavedMedianMs, median } from "./stats.js";

export interface ChatBenchOptions {
    threads: number;
    /** Tokens of history before the measured turn. @default 2048 */
    historyTokens?: number;
    /** Alternating rounds; a turn takes tens of milliseconds, so many rounds are cheap and steady the medians. @default 15 */
    rounds?: number;
    noPeer?: boolean;
    cacheDir?: string;
    log?: (line: string) => void;
    /** Layers to offload, for both runtimes (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
}

export interface ChatBenchRow {
    test: string;
    unit: "ms";
    llamafuse: number;
    nodeLlamaCpp: number | null;
    historyTokens: number;
    reusedTokens: number;
    evaluatedTokens: number;
}

/** A small Qwen2-shaped model (Qwen2.5's vocabulary and template), random weights. */
export const CHAT_BENCH_MODEL = { architecture: "qwen2", vocab: "qwen2", layers: 4, embedding: 256, heads: 4, headsKv: 2, ff: 768, qkvBias: true, seed: 1 } as const;

const FILLER = "The quick brown fox jumps over the lazy dog while the cat watches from the window sill. ";

function history(turns: number): ChatMessage[] {
    const out: ChatMessage[] = [{ role: "system", content: "You are a helpful assistant." }];
    for (let i = 0; i < turns; i++) {
        out.push({ role: "user", content: `Question ${i}: ${FILLER.repeat(2)}` });
        out.push({ role: "assistant", content: `Answer ${i}: ${FILLER.repeat(2)}` });
    }
    return out;
}

export async function runChatBench(o: ChatBenchOptions): Promise<ChatBenchRow[]> {
    const log = o.log ?? (() => {});
    const file = await cachedSynthModel(CHAT_BENCH_MODEL, { dir: o.cacheDir, name: "bench-chat" });
    const template = readFileSync(path.join(defaultVocabDir(), "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"), "utf8");
    const target = o.historyTokens ?? 2048;
    const rounds = o.rounds ?? 15;
    const model = await loadModel(file, ourGpuLayers(o.gpuLayers));
    try {
        // Grow the history until it renders to the target size.
        let turns = 1;
        while ((await model.tokenizeChat(history(turns), { template })).length < target) turns++;
        const base = history(turns);
        const baseTokens = (await model.tokenizeChat(base, { template })).length;
        const contextSize = Math.ceil((baseTokens + 256) / 256) * 256;
        log(`chat: ${baseTokens} tokens of history (${turns} turns), context ${contextSize}, ${o.threads} threads`);
        const reuse = await model.createChatSession({ template, contextSize, threads: o.threads, batchSize: 512 });
        const fresh = await model.createChatSession({ template, contextSize, threads: o.threads, batchSize: 512 });
        let stats = { reusedTokens: 0, evaluatedTokens: 0 };
        const ttft: Record<string, number[]> = { reuse: [], reevaluate: [], peer: [] };
        // The same, as process CPU time (all threads): what a turn costs, whatever else the
        // machine runs. Turns run one at a time, so the process's time is the turn's.
        const ttftCpu: Record<string, number[]> = { reuse: [], reevaluate: [], peer: [] };
        const cpuMs = (since: NodeJS.CpuUsage) => {
            const c = process.cpuUsage(since);
            return (c.user + c.system) / 1000;
        };
        const firstToken = async (chat: typeof reuse, clear: boolean) => {
            chat.history = base;
            if (clear) await chat.context.kv.clear();
            const t0 = performance.now();
            const c0 = process.cpuUsage();
            let first = 0, firstCpu = 0;
            const it = chat.stream("One more question: what happens next?", { temperature: 0, maxTokens: 1 });
            for (let r = await it.next(); ; r = await it.next()) {
                if (!first) {
                    first = performance.now() - t0;
                    firstCpu = cpuMs(c0);
                }
                if (r.done) {
                    if (!clear) stats = r.value.stats;
                    break;
                }
            }
            ttft[clear ? "reevaluate" : "reuse"]!.push(first);
            ttftCpu[clear ? "reevaluate" : "reuse"]!.push(firstCpu);
        };
        await firstToken(reuse, false); // the reuse session's cache now holds the history
        // async functions: tinybench calls any other function once at add() to see whether it
        // returns a promise, which would start a turn outside the timing.
        const tasks: Record<string, () => Promise<unknown>> = {
            reuse: async () => firstToken(reuse, false),
            reevaluate: async () => firstToken(fresh, true),
        };
        let peerDispose: (() => Promise<void>) | null = null;
        if (!o.noPeer) {
            const { getLlama, LlamaChatSession, JinjaTemplateChatWrapper, LlamaLogLevel } = await import("node-llama-cpp");
            const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.disabled, progressLogs: false });
            const pm = await llama.loadModel({ modelPath: file, ...peerGpuLayers(o.gpuLayers) });
            const pctx = await pm.createContext({ contextSize, threads: o.threads, batchSize: 512 });
            const chatWrapper = new JinjaTemplateChatWrapper({ template });
            const session = new LlamaChatSession({ contextSequence: pctx.getSequence(), chatWrapper, autoDisposeSequence: false });
            const peerHistory = session.getChatHistory().slice(0, 0);
            peerHistory.push({ type: "system", text: base[0]!.content as string });
            for (let i = 1; i < base.length; i += 2) {
                peerHistory.push({ type: "user", text: base[i]!.content as string });
                peerHistory.push({ type: "model", response: [base[i + 1]!.content as string] });
            }
            const peerTurn = async () => {
                session.setChatHistory(peerHistory);
                const t0 = performance.now();
                const c0 = process.cpuUsage();
                let first = 0, firstCpu = 0;
                const onFirst = () => {
                    if (first) return;
                    first = performance.now() - t0;
                    firstCpu = cpuMs(c0);
                };
                await session.prompt("One more question: what happens next?", { maxTokens: 1, temperature: 0, onTextChunk: onFirst });
                onFirst(); // no text came (the token was held back): the turn's end is its first output
                ttft.peer!.push(first);
                ttftCpu.peer!.push(firstCpu);
            };
            await peerTurn();
            tasks.peer = async () => peerTurn();
            peerDispose = async () => {
                session.dispose();
                await pctx.dispose();
                await pm.dispose();
            };
        }
        for (const k of Object.keys(ttft)) ttft[k]!.length = ttftCpu[k]!.length = 0; // the warm-up turns above
        const ms = await interleavedMedianMs(tasks, rounds);
        await peerDispose?.();
        await reuse.dispose();
        await fresh.dispose();
        // interleavedMedianMs runs each task once more as a warm-up round: drop it.
        const first = (k: string) => median(ttft[k]!.slice(1));
        const firstCpu = (k: string) => median(ttftCpu[k]!.slice(1));
        const peerFirst = o.noPeer ? null : first("peer");
        const peerTurn = ms.peer ?? null;
        return [
            { test: `TTFT after ${baseTokens} tokens of history (reuse)`, unit: "ms", llamafuse: first("reuse"), nodeLlamaCpp: peerFirst, historyTokens: baseTokens, ...stats },
            { test: `TTFT after ${baseTokens} tokens of history (re-evaluate all)`, unit: "ms", llamafuse: first("reevaluate"), nodeLlamaCpp: peerFirst, historyTokens: baseTokens, reusedTokens: 0, evaluatedTokens: stats.reusedTokens + stats.evaluatedTokens },
            { test: `TTFT after ${baseTokens} tokens of history (reuse), process CPU time`, unit: "ms", llamafuse: firstCpu("reuse"), nodeLlamaCpp: o.noPeer ? null : firstCpu("peer"), historyTokens: baseTokens, ...stats },
            { test: `one-token turn, whole, after ${baseTokens} tokens (reuse)`, unit: "ms", llamafuse: ms.reuse!, nodeLlamaCpp: peerTurn, historyTokens: baseTokens, ...stats },
        ];
    } finally {
        await model.dispose();
    }
}
