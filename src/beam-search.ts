// Beam search on the KV API (llama.cpp dropped its own): each live beam is a sequence of the
// context; beams share the prompt's cells through sequence copies, every step expands all
// live beams in one batched forward (one item per beam), and the slots of beams that die or
// finish are reused by the children of the ones that live on.
//
// Beside other work on the context: the search holds its sequences for its whole run, as a
// generation holds its own (a generate, forward or kv call on one of them gets ERR_BUSY, and
// the search gets ERR_BUSY when one of them is generating). Each of its steps (the slot copies
// and the batched forward) is one job on the context's queue, so it runs between the
// scheduler's steps: generations on the other sequences go on, a step of theirs, a step of the
// search, and so on. The search's tokens are not yet part of the scheduler's shared
// llama_decode: ranking the beams needs every live beam's row and moves slots between steps
// (copies), which the native loop (one sampler per sequence) does not do yet.
import type { NativeContext } from "./binding.js";
import type { Context } from "./context.js";
import { LlamaError, abortedError } from "./errors.js";
import { abortFlag } from "./queue.js";
import { toTokenArray } from "./tokens.js";
import { checkKnownKeys, invalidOption, is, optBool, optInt, optNumber, optSignal, optionsObject } from "./validate.js";

export interface BeamSearchOptions {
    /** Beam width; the context needs at least this many sequences. @default 4 (or sequences.length) */
    beams?: number;
    /**
     * The sequences the beams live on, held (and emptied) for the search's run; others stay
     * free for concurrent generations. @default [0, 1, ..., beams - 1]
     */
    sequences?: number[];
    /** Most tokens per hypothesis. @default 32 */
    maxTokens?: number;
    /** score = logProb / length^lengthPenalty (0: plain log-probability). @default 1 */
    lengthPenalty?: number;
    /** Strings that finish a hypothesis (its text is cut before the match). */
    stop?: string | string[];
    /** An end-of-generation token finishes a hypothesis (counted in its logProb, not in its tokens). @default true */
    stopOnEog?: boolean;
    signal?: AbortSignal;
}

export interface BeamHypothesis {
    tokens: number[];
    text: string;
    /** Sum of the model's log-probabilities of the chosen tokens (natural log). */
    logProb: number;
    score: number;
    /** Why it ended: an end-of-generation token, a stop string, maxTokens, or a full context. */
    stopReason: "eog" | "stop" | "maxTokens" | "contextFull";
}

interface Beam {
    slot: number;
    tokens: number[];
    bytes: Uint8Array[];
    logProb: number;
    logits: Float32Array | null;
}

/** log-softmax of row's values at the `k` best indices, best first (ties: lower id first). */
function topLogProbs(row: Float32Array, k: number): { token: number; logProb: number }[] {
    let max = -Infinity;
    for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
    let sum = 0;
    for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
    const lse = max + Math.log(sum);
    const best: number[] = [];
    for (let i = 0; i < row.length; i++) {
        const v = row[i]!;
        if (best.length === k && v <= row[best[k - 1]!]!) continue;
        let j = best.length < k ? best.length : k - 1;
        best[j] = i;
        while (j > 0 && row[best[j - 1]!]! < v) {
            [best[j - 1], best[j]] = [best[j]!, best[j - 1]!];
            j--;
        }
    }
    return best.map((t) => ({ token: t, logProb: row[t]! - lse }));
}

function concat(parts: Uint8Array[]): Uint8Array {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
        out.set(p, at);
        at += p.length;
    }
    return out;
}

/**
 * Beam search from `tokens` (the prompt, as given). Uses sequences 0..beams-1 of the context,
 * clearing them first and last. Returns up to `beams` hypotheses, best score first.
 */
export async function beamSearch(ctx: Context, tokens: ArrayLike<number>, options?: BeamSearchOptions): Promise<BeamHypothesis[]> {
    const o = optionsObject("options", options);
    checkKnownKeys("beamSearch", o, ["beams", "maxTokens", "lengthPenalty", "stop", "stopOnEog", "signal", "sequences"]);
    const given = o.sequences;
    if (given !== undefined && (!Array.isArray(given) || given.length === 0)) throw invalidOption("sequences", "a non-empty array of sequence ids", given);
    const width = optInt(o, "beams", given ? (given as unknown[]).length : 4, 1, 256);
    const maxTokens = optInt(o, "maxTokens", 32, 1, 2 ** 31 - 1);
    const lengthPenalty = optNumber(o, "lengthPenalty", 1, -10, 10);
    const stopOnEog = optBool(o, "stopOnEog", true);
    const signal = optSignal(o);
    const stopRaw = o.stop ?? [];
    const stops = is.string(stopRaw) ? [stopRaw] : stopRaw;
    if (!Array.isArray(stops) || !stops.every((s) => is.string(s) && s.length > 0)) throw invalidOption("stop", "a non-empty string or an array of them", o.stop);
    const prompt = toTokenArray("tokens", tokens, ctx.model.info.vocabSize, false);
    if (ctx.sequences < width) {
        throw new LlamaError("ERR_INVALID_OPTION", `beamSearch with ${width} beams needs a context with at least ${width} sequences (this one has ${ctx.sequences}: create it with { sequences: ${width} })`);
    }
    const slots = given ? (given as unknown[]).map((v, i) => ctx.checkSequence(`sequences[${i}]`, v)) : Array.from({ length: width }, (_, i) => i);
    if (slots.length !== width) throw invalidOption("sequences", `${width} sequence ids (one per beam)`, given);
    if (new Set(slots).size !== slots.length) throw invalidOption("sequences", "distinct sequence ids", given);
    const model = ctx.model;
    const score = (logProb: number, length: number) => (lengthPenalty === 0 ? logProb : logProb / Math.pow(Math.max(1, length), lengthPenalty));
    const textOf = (parts: Uint8Array[]) => new TextDecoder().decode(concat(parts));
    const stopAt = (text: string) => {
        let at = -1;
        for (const s of stops as string[]) {
            const i = text.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        return at;
    };
    const checkAbort = () => {
        if (signal?.aborted) throw abortedError("beamSearch", signal.reason);
    };
    // The search's own context operations. Its sequences are held, so it calls the native
    // context directly (ctx.forward and ctx.kv refuse held sequences) and keeps the context's
    // token list as they do.
    const cache = ctx.sequenceTokens;
    const empty = (native: NativeContext, seq: number) => {
        if (native.kvRemove(seq, -1, -1)) cache.removed(seq, -1, -1);
        else cache.invalidate(seq);
    };
    const copies = (native: NativeContext, list: { from: number; to: number }[]) => {
        for (const { from, to } of list) {
            empty(native, to);
            native.kvCopy(from, to, -1, -1);
            cache.copied(from, to, -1, -1);
        }
    };
    // One decode: a token list per sequence, logits after each list's last token, in order.
    const decode = async (native: NativeContext, items: { seq: number; tokens: ArrayLike<number> }[]): Promise<Float32Array[]> => {
        const total = items.reduce((n, it) => n + it.tokens.length, 0);
        const tokens = new Int32Array(total), seqs = new Int32Array(total), want = new Uint8Array(total);
        let at = 0;
        for (const it of items) {
            tokens.set(Array.from(it.tokens), at);
            seqs.fill(it.seq, at, at + it.tokens.length);
            at += it.tokens.length;
            want[at - 1] = 1;
        }
        const abort = abortFlag(signal);
        try {
            const data = await native.forward(tokens, seqs, want, abort.flag);
            for (const it of items) cache.append(it.seq, it.tokens);
            const n = model.info.vocabSize;
            return items.map((_, i) => data.subarray(i * n, (i + 1) * n));
        } catch (err) {
            // An abort by the signal says "beamSearch was aborted", not "forward was aborted".
            if (signal?.aborted) throw abortedError("beamSearch", signal.reason);
            throw err;
        } finally {
            abort.release();
        }
    };

    const finished: BeamHypothesis[] = [];
    let endReason: BeamHypothesis["stopReason"] = "maxTokens";
    const held: number[] = [];
    try {
        checkAbort();
        for (const s of slots) {
            if (ctx.sequenceBusy(s)) throw new LlamaError("ERR_BUSY", `beamSearch: sequence ${s} is generating (give the search other sequences with options.sequences, or wait for that generation to end)`);
            ctx.claimSequence(s);
            held.push(s);
        }
        const [first] = await ctx.enqueue(async (native) => {
            for (const s of slots) empty(native, s);
            return decode(native, [{ seq: slots[0]!, tokens: prompt }]);
        });
        let live: Beam[] = [{ slot: slots[0]!, tokens: [], bytes: [], logProb: 0, logits: first! }];

        for (let step = 0; step < maxTokens && live.length > 0; step++) {
            checkAbort();
            // Every live beam's best continuations, ranked together.
            const cands: { parent: Beam; token: number; logProb: number }[] = [];
            for (const b of live) {
                for (const c of topLogProbs(b.logits!, Math.min(2 * width, model.info.vocabSize))) {
                    cands.push({ parent: b, token: c.token, logProb: b.logProb + c.logProb });
                }
            }
            cands.sort((x, y) => y.logProb - x.logProb);
            const chosen: typeof cands = [];
            for (const c of cands) {
                if (chosen.length === width) break;
                if (stopOnEog && model.isEndOfGeneration(c.token)) {
                    const t = c.parent.tokens;
                    finished.push({ tokens: [...t], text: textOf(c.parent.bytes), logProb: c.logProb, score: score(c.logProb, t.length + 1), stopReason: "eog" });
                    continue;
                }
                chosen.push(c);
            }
            // The first child of a beam keeps its slot; other children take free slots,
            // which get a copy of the parent's cells before anything is appended.
            const taken = new Set<Beam>();
            const busySlots = new Set(chosen.map((c) => c.parent.slot));
            const free = slots.filter((s) => !busySlots.has(s));
            const next: Beam[] = [];
            const toCopy: { from: number; to: number }[] = [];
            for (const c of chosen) {
                let slot = c.parent.slot;
                if (taken.has(c.parent)) {
                    slot = free.pop()!;
                    toCopy.push({ from: c.parent.slot, to: slot });
                }
                taken.add(c.parent);
                const piece = model.tokenPieces([c.token], { special: false })[0]!;
                next.push({ slot, tokens: [...c.parent.tokens, c.token], bytes: [...c.parent.bytes, piece], logProb: c.logProb, logits: null });
            }
            // A beam whose text reached a stop string is finished; its slot is free again.
            live = [];
            for (const b of next) {
                const text = textOf(b.bytes);
                const at = stops.length > 0 ? stopAt(text) : -1;
                if (at >= 0) finished.push({ tokens: b.tokens, text: text.slice(0, at), logProb: b.logProb, score: score(b.logProb, b.tokens.length), stopReason: "stop" });
                else live.push(b);
            }
            if (finished.length >= width && live.length > 0) {
                // Heuristic early end: no live beam currently scores above the worst of the best finished.
                const worst = [...finished].sort((a, b) => b.score - a.score)[width - 1]!.score;
                if (Math.max(...live.map((b) => score(b.logProb, b.tokens.length))) <= worst) live = [];
            }
            if (live.length === 0 || step === maxTokens - 1) break;
            checkAbort();
            // The step: the new beams' copies of their parents' cells, then one forward.
            let rows: Float32Array[];
            try {
                rows = await ctx.enqueue(async (native) => {
                    copies(native, toCopy);
                    return decode(native, live.map((b) => ({ seq: b.slot, tokens: [b.tokens[b.tokens.length - 1]!] })));
                });
            } catch (err) {
                // The context is full: the hypotheses so far are the answer (the forward
                // changed nothing, so every live beam ends with the tokens it has).
                if (!(err instanceof LlamaError && err.code === "ERR_CONTEXT_FULL")) throw err;
                endReason = "contextFull";
                break;
            }
            live.forEach((b, i) => (b.logits = rows[i]!));
        }
        for (const b of live) finished.push({ tokens: b.tokens, text: textOf(b.bytes), logProb: b.logProb, score: score(b.logProb, b.tokens.length), stopReason: endReason });
    } finally {
        if (held.length > 0 && !ctx.disposed) {
            await ctx.enqueue((native) => {
                for (const s of held) empty(native, s);
            }).catch(() => {});
        }
        for (const s of held) ctx.releaseSequence(s);
    }
    return finished.sort((a, b) => b.score - a.score).slice(0, width);
}
