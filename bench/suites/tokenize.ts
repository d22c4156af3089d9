// Tokenizer benchmark: tokenize and detokenize throughput, and the cost of one short call,
// llamafuse against node-llama-cpp on the same vocabulary files (llama.cpp's vocab-only
// GGUFs: SentencePiece and BPE). Ours runs off the main thread (a Promise per call); the
// peer's tokenize is synchronous, so the short-call row shows what the async hop costs, and the
// tokenizeSync / detokenizeSync rows compare like with like.
import path from "node:path";
import { loadModel } from "../../src/model.js";
import { defaultVocabDir } from "../../src/synth/index.js";
import { loadPeer } from "./peer.js";
import { medianMs } from "./stats.js";

export interface TokenizeBenchOptions {
    /** Vocab names in llama.cpp's models folder, or paths to GGUF files. @default ["llama-spm", "llama-bpe"] */
    vocabs?: string[];
    /** Bytes of text per throughput call. @default 256 KiB */
    textBytes?: number;
    /** Minimum timed runs per figure (median reported). @default 5 */
    reps?: number;
    noPeer?: boolean;
}

export interface TokenizeBenchRow {
    test: string;
    vocab: string;
    unit: "tokens/s" | "µs/call";
    llamafuse: number;
    nodeLlamaCpp: number | null;
    /** >1: llamafuse is faster. */
    ratio: number | null;
    /** Both tokenizers produced the same ids (a benchmark of different work would mean nothing). */
    sameTokens: boolean | null;
}

// English prose with some code, numbers, CJK and emoji: what prompts look like.
const SAMPLE = [
    "Once upon a time, in a small town by the sea, there lived a girl named Lily who loved to build boats. ",
    "Every morning she walked to the harbour, counted 12 fishing boats and 3 sailboats, and wrote the numbers down. ",
    "function add(a, b) { return a + b; } // 1 + 2 = 3\n",
    "東京は日本の首都です。 Ünïcödé façade, naïve café. 🙂🚀 ",
    "The quick brown fox jumps over the lazy dog; 3.14159 and 2,718 are numbers.\n",
].join("");

export function benchText(bytes: number): string {
    let s = "";
    while (Buffer.byteLength(s) < bytes) s += SAMPLE;
    return s;
}

function vocabPath(v: string): string {
    return v.includes("/") || v.endsWith(".gguf") ? path.resolve(v) : path.join(defaultVocabDir(), `ggml-vocab-${v}.gguf`);
}

export async function runTokenizeBench(options: TokenizeBenchOptions = {}): Promise<TokenizeBenchRow[]> {
    const vocabs = options.vocabs ?? ["llama-spm", "llama-bpe"];
    const text = benchText(options.textBytes ?? 256 * 1024);
    const short = "Hello, how are you today?";
    const reps = options.reps ?? 5;
    const { peer } = options.noPeer ? { peer: null } : await loadPeer();
    const rows: TokenizeBenchRow[] = [];
    try {
        for (const v of vocabs) {
            const file = vocabPath(v);
            const ours = await loadModel(file, { vocabOnly: true });
            const theirs = peer ? await peer.llama.loadModel({ modelPath: file, vocabOnly: true }) : null;
            try {
                const ourTokens = await ours.tokenize(text, { addSpecial: false });
                const peerTokens = theirs ? theirs.tokenize(text) : null;
                const same = peerTokens ? peerTokens.length === ourTokens.length && peerTokens.every((t, i) => t === ourTokens[i]) : null;
                const n = ourTokens.length;
                const name = path.basename(file, ".gguf").replace(/^ggml-vocab-/, "");

                const tOurs = await medianMs("tokenize ours", () => ours.tokenize(text, { addSpecial: false }), { iterations: reps });
                const tPeer = theirs ? await medianMs("tokenize peer", () => theirs.tokenize(text), { iterations: reps }) : null;
                rows.push(row(`tokenize ${(text.length / 1024).toFixed(0)}K chars`, name, "tokens/s", n / (tOurs / 1000), tPeer === null ? null : n / (tPeer / 1000), same));

                const dOurs = await medianMs("detokenize ours", () => ours.detokenize(ourTokens), { iterations: reps });
                const dPeer = theirs && peerTokens ? await medianMs("detokenize peer", () => theirs.detokenize(peerTokens), { iterations: reps }) : null;
                rows.push(row(`detokenize ${n} tokens`, name, "tokens/s", n / (dOurs / 1000), dPeer === null ? null : n / (dPeer / 1000), same));

                // One short call: dominated by per-call cost, not by the tokenizer.
                const calls = 200;
                const sOurs = await medianMs("short ours", async () => {
                    for (let i = 0; i < calls; i++) await ours.tokenize(short, { addSpecial: false });
                }, { iterations: reps });
                const sPeer = theirs ? await medianMs("short peer", () => {
                    for (let i = 0; i < calls; i++) theirs.tokenize(short);
                }, { iterations: reps }) : null;
                const o = (sOurs * 1000) / calls, p = sPeer === null ? null : (sPeer * 1000) / calls;
                rows.push({ test: "tokenize 1 short sentence", vocab: name, unit: "µs/call", llamafuse: o, nodeLlamaCpp: p, ratio: p === null ? null : p / o, sameTokens: null });

                // The same short call without the thread hop (tokenizeSync), against the peer's
                // (synchronous) tokenize, alternated; then detokenizeSync of its tokens.
                const shortOurs = ours.tokenizeSync(short, { addSpecial: false });
                const shortPeer = theirs ? theirs.tokenize(short) : null;
                const sameShort = shortPeer ? shortPeer.length === shortOurs.length && shortPeer.every((t, i) => t === shortOurs[i]) : null;
                const syncOurs = await medianMs("short sync ours", () => {
                    for (let i = 0; i < calls; i++) ours.tokenizeSync(short, { addSpecial: false });
                }, { iterations: reps });
                const syncPeer = theirs ? await medianMs("short sync peer", () => {
                    for (let i = 0; i < calls; i++) theirs.tokenize(short);
                }, { iterations: reps }) : null;
                const so = (syncOurs * 1000) / calls, sp = syncPeer === null ? null : (syncPeer * 1000) / calls;
                rows.push({ test: "tokenizeSync 1 short sentence", vocab: name, unit: "µs/call", llamafuse: so, nodeLlamaCpp: sp, ratio: sp === null ? null : sp / so, sameTokens: sameShort });
                const dsOurs = await medianMs("short detok sync ours", () => {
                    for (let i = 0; i < calls; i++) ours.detokenizeSync(shortOurs);
                }, { iterations: reps });
                const dsPeer = theirs && shortPeer ? await medianMs("short detok sync peer", () => {
                    for (let i = 0; i < calls; i++) theirs.detokenize(shortPeer);
                }, { iterations: reps }) : null;
                const dso = (dsOurs * 1000) / calls, dsp = dsPeer === null ? null : (dsPeer * 1000) / calls;
                rows.push({ test: "detokenizeSync 1 short sentence", vocab: name, unit: "µs/call", llamafuse: dso, nodeLlamaCpp: dsp, ratio: dsp === null ? null : dsp / dso, sameTokens: sameShort });
            } finally {
                await ours.dispose();
                await theirs?.dispose();
            }
        }
    } finally {
        await peer?.dispose();
    }
    return rows;
}

function row(test: string, vocab: string, unit: "tokens/s", ours: number, peer: number | null, same: boolean | null): TokenizeBenchRow {
    return { test, vocab, unit, llamafuse: ours, nodeLlamaCpp: peer, ratio: peer === null ? null : ours / peer, sameTokens: same };
}
