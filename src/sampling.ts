// Sampling options: validated and resolved here into the exact stage list of a llama.cpp
// sampler chain (native code builds what it is given). A chain is built once per
// (context, sequence, option set) and reused, so stateful stages keep their history.
import { binding, type NativeSampleResult, type NativeSampler, type NativeSamplerStage } from "./binding.js";
import type { Context } from "./context.js";
import { LlamaError, abortedError, callNative, disposedError } from "./errors.js";
import { abortFlag } from "./queue.js";
import { jsonSchemaToGrammar } from "./json-schema.js";
import { toTokenArray } from "./tokens.js";
import type { Model } from "./model.js";
import { checkKnownKeys, describe, invalidOption, is, optInt, optNumber, optSignal, optionsObject } from "./validate.js";

/** llama.cpp's "pick a random seed" value. */
export const RANDOM_SEED = 0xffffffff;

export interface SamplingOptions {
    /** Softmax temperature; 0 picks the most likely token (greedy) and skips truncation stages. @default 0.8 */
    temperature?: number;
    /** Dynamic temperature: range around `temperature` (0: off). @default 0 */
    dynatempRange?: number;
    /** Dynamic temperature exponent. @default 1 */
    dynatempExponent?: number;
    /** Keep the k most likely tokens (0: off). @default 40 */
    topK?: number;
    /** Nucleus: keep the smallest set whose probability reaches p (1: off). @default 0.95 */
    topP?: number;
    /** Drop tokens less likely than minP × the most likely one's probability (0: off). @default 0.05 */
    minP?: number;
    /** Locally typical sampling (1: off). @default 1 */
    typicalP?: number;
    /** Keep tokens within n standard deviations of the top logit (<= 0: off). @default -1 */
    topNSigma?: number;
    /** XTC: chance of removing the most likely tokens (0: off). @default 0 */
    xtcProbability?: number;
    /** XTC: tokens above this probability are candidates for removal. @default 0.1 */
    xtcThreshold?: number;
    /** DRY repetition penalty strength (0: off). @default 0 */
    dryMultiplier?: number;
    /** DRY penalty base. @default 1.75 */
    dryBase?: number;
    /** DRY: repeats up to this length are not penalised. @default 2 */
    dryAllowedLength?: number;
    /** DRY: tokens of history scanned (-1: the context size, or 4096 without a context). @default -1 */
    dryPenaltyLastN?: number;
    /** DRY: strings that break a repeated sequence. @default ["\n", ":", "\"", "*"] */
    drySequenceBreakers?: string[];
    /** Mirostat version (0: off; 1 or 2). Replaces the truncation stages. @default 0 */
    mirostat?: 0 | 1 | 2;
    /** Mirostat target surprise. @default 5 */
    mirostatTau?: number;
    /** Mirostat learning rate. @default 0.1 */
    mirostatEta?: number;
    /** Divide (positive) logits of recent tokens by this (1: off). @default 1 */
    repeatPenalty?: number;
    /** Subtract count × this from recent tokens' logits (0: off). @default 0 */
    frequencyPenalty?: number;
    /** Subtract this from the logits of tokens seen recently (0: off). @default 0 */
    presencePenalty?: number;
    /** Recent tokens the penalties look at (0: off). @default 64 */
    penaltyLastN?: number;
    /** Added to tokens' logits; -Infinity bans a token. */
    logitBias?: Record<number, number> | Map<number, number>;
    /**
     * RNG seed (0 to 2^32-2); unset: random. Same seed and same logits give the same token,
     * whatever else was in the batch. The logits themselves can differ in their last bits
     * with batch size and composition (llama.cpp picks kernels and reduction orders by batch
     * shape), so a seeded run repeats exactly only with the same batching. The draws restart
     * from the seed on reset (each generate() call resets).
     */
    seed?: number;
    /** A GBNF grammar (root rule "root") that output must follow. */
    grammar?: string;
    /** A JSON schema that output must follow (turned into a GBNF grammar). */
    jsonSchema?: Record<string, unknown> | boolean;
    /**
     * Makes the grammar lazy: output is free until one of these triggers appears, and must
     * follow the grammar from the trigger on (how tool calls are constrained: the model may
     * answer in prose or start a call). patterns: regular expressions over the output text
     * (the grammar starts at the first capture group, else at the match); tokens: token ids.
     */
    grammarTriggers?: { patterns?: string[]; tokens?: number[] };
    /**
     * Tokens the grammar is advanced past before the first sampled token, because the prompt
     * already ends with them: chat templates' tool-call and output-format grammars start with
     * the assistant turn's opening (llama.cpp's generation prompt). Not with grammarTriggers.
     */
    grammarPrefix?: ArrayLike<number>;
    /** Also return the chosen token's log-probability and the n most likely candidates'. */
    logProbs?: number;
}

export const SAMPLING_KEYS = [
    "temperature", "dynatempRange", "dynatempExponent", "topK", "topP", "minP", "typicalP", "topNSigma",
    "xtcProbability", "xtcThreshold", "dryMultiplier", "dryBase", "dryAllowedLength", "dryPenaltyLastN",
    "drySequenceBreakers", "mirostat", "mirostatTau", "mirostatEta", "repeatPenalty", "frequencyPenalty",
    "presencePenalty", "penaltyLastN", "logitBias", "seed", "grammar", "jsonSchema", "grammarTriggers", "grammarPrefix", "logProbs",
] as const;

/** Every option with its value filled in. */
export type ResolvedSampling = Required<Omit<SamplingOptions, "logitBias" | "grammar" | "jsonSchema" | "grammarTriggers" | "grammarPrefix" | "logProbs">> & {
    logitBias: Map<number, number>;
    /** GBNF text (from grammar or jsonSchema), or null. */
    grammar: string | null;
    /** Lazy-grammar triggers, or null for a grammar that applies from the first token. */
    grammarTriggers: { patterns: string[]; tokens: number[] } | null;
    grammarPrefix: number[];
    /** -1: no log-probs. */
    logProbs: number;
};

export interface ResolvedSamplingConfig {
    options: ResolvedSampling;
    /** What native code builds. */
    native: { stages: NativeSamplerStage[]; grammar: string | null; triggerPatterns?: string[]; triggerTokens?: number[]; grammarPrefill?: number[] };
    /** Identifies the chain: equal keys build equal chains. */
    key: string;
}

const MAX_I32 = 2 ** 31 - 1;

function resolveLogitBias(v: unknown, vocabSize: number): Map<number, number> {
    const out = new Map<number, number>();
    if (v === undefined) return out;
    let entries: [unknown, unknown][];
    if (v instanceof Map) entries = [...v.entries()];
    else if (is.object(v)) entries = Object.entries(v);
    else throw invalidOption("logitBias", "an object or Map of token id → bias", v);
    for (const [k, b] of entries) {
        const t = typeof k === "string" && /^\d+$/.test(k) ? Number(k) : k;
        if (!is.integer(t) || (t as number) < 0 || (t as number) >= vocabSize) {
            throw new LlamaError("ERR_INVALID_TOKEN", `logitBias key ${describe(k)} is not a token id of this model (0 to ${vocabSize - 1})`);
        }
        if (typeof b !== "number" || Number.isNaN(b) || b === Infinity) throw invalidOption(`logitBias[${String(t)}]`, "a finite number or -Infinity", b);
        out.set(t as number, b);
    }
    return out;
}

/**
 * Validates sampling options and resolves them into a chain. `vocabSize` checks logitBias
 * token ids; `historySize` is what dryPenaltyLastN: -1 means. Keys in `extraKeys` belong
 * to the caller (generate's maxTokens, ...) and are ignored here.
 */
export function resolveSampling(
    options: unknown,
    vocabSize: number,
    historySize = 4096,
    extraKeys: readonly string[] = [],
    where = "sample",
): ResolvedSamplingConfig {
    const o = optionsObject("options", options);
    checkKnownKeys(where, o, [...SAMPLING_KEYS, ...extraKeys]);
    const temperature = optNumber(o, "temperature", 0.8, 0, 1e6);
    const dynatempRange = optNumber(o, "dynatempRange", 0, 0, 1e6);
    const dynatempExponent = optNumber(o, "dynatempExponent", 1, 0, 1e6);
    const topK = optInt(o, "topK", 40, 0, MAX_I32);
    const topP = optNumber(o, "topP", 0.95, 0, 1);
    const minP = optNumber(o, "minP", 0.05, 0, 1);
    const typicalP = optNumber(o, "typicalP", 1, 0, 1);
    const topNSigma = optNumber(o, "topNSigma", -1, -1, 1e6);
    const xtcProbability = optNumber(o, "xtcProbability", 0, 0, 1);
    const xtcThreshold = optNumber(o, "xtcThreshold", 0.1, 0, 1);
    const dryMultiplier = optNumber(o, "dryMultiplier", 0, 0, 1e6);
    const dryBase = optNumber(o, "dryBase", 1.75, 1, 1e6);
    const dryAllowedLength = optInt(o, "dryAllowedLength", 2, 0, MAX_I32);
    const dryPenaltyLastN = optInt(o, "dryPenaltyLastN", -1, -1, MAX_I32);
    const drySequenceBreakers = o.drySequenceBreakers === undefined ? ["\n", ":", '"', "*"] : o.drySequenceBreakers;
    if (!Array.isArray(drySequenceBreakers) || !drySequenceBreakers.every((s) => is.string(s) && s.length > 0)) {
        throw invalidOption("drySequenceBreakers", "an array of non-empty strings", o.drySequenceBreakers);
    }
    const mirostat = optInt(o, "mirostat", 0, 0, 2) as 0 | 1 | 2;
    const mirostatTau = optNumber(o, "mirostatTau", 5, 0, 1e6);
    const mirostatEta = optNumber(o, "mirostatEta", 0.1, 0, 1e6);
    const repeatPenalty = optNumber(o, "repeatPenalty", 1, Number.MIN_VALUE, 1e6);
    const frequencyPenalty = optNumber(o, "frequencyPenalty", 0, -1e6, 1e6);
    const presencePenalty = optNumber(o, "presencePenalty", 0, -1e6, 1e6);
    const penaltyLastN = optInt(o, "penaltyLastN", 64, 0, MAX_I32);
    const logitBias = resolveLogitBias(o.logitBias, vocabSize);
    const seed = optInt(o, "seed", RANDOM_SEED, 0, RANDOM_SEED);
    const logProbs = o.logProbs === undefined ? -1 : optInt(o, "logProbs", 0, 0, 1000);
    if (o.grammar !== undefined && o.jsonSchema !== undefined) {
        throw new LlamaError("ERR_INVALID_OPTION", "Give either grammar or jsonSchema, not both");
    }
    if (o.grammar !== undefined && !is.string(o.grammar)) throw invalidOption("grammar", "a GBNF grammar string", o.grammar);
    if (is.string(o.grammar)) checkGrammarRepetitions(o.grammar);
    const grammar = o.jsonSchema !== undefined ? jsonSchemaToGrammar(o.jsonSchema) : ((o.grammar as string | undefined) ?? null);
    const grammarTriggers = resolveGrammarTriggers(o.grammarTriggers, grammar, vocabSize);
    const grammarPrefix = o.grammarPrefix === undefined ? [] : Array.from(toTokenArray("grammarPrefix", o.grammarPrefix as ArrayLike<number>, vocabSize));
    if (grammarPrefix.length > 0 && (grammar === null || grammarTriggers)) {
        throw new LlamaError("ERR_INVALID_OPTION", "grammarPrefix needs a grammar that applies from the start (not grammarTriggers)");
    }

    const options_: ResolvedSampling = {
        temperature, dynatempRange, dynatempExponent, topK, topP, minP, typicalP, topNSigma, xtcProbability, xtcThreshold,
        dryMultiplier, dryBase, dryAllowedLength, dryPenaltyLastN, drySequenceBreakers, mirostat, mirostatTau, mirostatEta,
        repeatPenalty, frequencyPenalty, presencePenalty, penaltyLastN, logitBias, seed, grammar, grammarTriggers, grammarPrefix, logProbs,
    };
    const stages = buildStages(options_, historySize);
    const native = {
        stages,
        grammar: grammar === "" ? null : grammar,
        ...(grammarTriggers && grammar ? { triggerPatterns: grammarTriggers.patterns, triggerTokens: grammarTriggers.tokens } : {}),
        ...(grammarPrefix.length > 0 ? { grammarPrefill: grammarPrefix } : {}),
    };
    const key = JSON.stringify(native, (_k, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array, (x) => (x === -Infinity ? "-inf" : x)) : v));
    return { options: options_, native, key };
}

function resolveGrammarTriggers(v: unknown, grammar: string | null, vocabSize: number): { patterns: string[]; tokens: number[] } | null {
    if (v === undefined) return null;
    if (!is.object(v)) throw invalidOption("grammarTriggers", "an object { patterns?, tokens? }", v);
    if (grammar === null) throw new LlamaError("ERR_INVALID_OPTION", "grammarTriggers needs a grammar or jsonSchema to trigger");
    const patterns = v.patterns ?? [];
    const tokens = v.tokens ?? [];
    if (!Array.isArray(patterns) || !patterns.every((p) => is.string(p) && p.length > 0 && p.length <= 4096)) {
        // Syntax is checked by llama.cpp (std::regex, ECMAScript grammar) when the sampler is built.
        throw invalidOption("grammarTriggers.patterns", "an array of regular expressions (strings)", v.patterns);
    }
    if (!Array.isArray(tokens) || !tokens.every((t) => is.integer(t) && (t as number) >= 0 && (t as number) < vocabSize)) {
        throw invalidOption("grammarTriggers.tokens", `an array of token ids below ${vocabSize}`, v.tokens);
    }
    if (patterns.length + tokens.length === 0) throw invalidOption("grammarTriggers", "at least one pattern or token", v);
    for (const p of patterns as string[]) checkTriggerPattern(p);
    return { patterns: patterns as string[], tokens: tokens as number[] };
}

/**
 * llama.cpp searches the whole output so far with each trigger pattern after every token
 * (std::regex, a backtracking matcher), until one matches. A repeated group that itself repeats
 * or branches, as in (.|\s)* or (a+)+, backtracks exponentially: (.|\s)*TRIGGER took 0.24 s at
 * 25 tokens and never finished 50, on the scheduler's thread, where no abort reaches. Refused
 * here. Skips escapes and character classes, where these characters mean nothing.
 */
export function checkTriggerPattern(p: string): void {
    // Per open group: whether it holds a quantifier or a top-level alternation so far.
    const groups: { risky: boolean }[] = [];
    let lastGroupRisky = false; // the group that just closed, for a quantifier right after it
    const quantifierAt = (i: number): boolean => {
        const c = p[i];
        if (c === "*" || c === "+") return true;
        if (c === "{") return /^\{\d*,?\d*\}/.test(p.slice(i)) && !/^\{(\d+)\}|^\{0*1?,0*1\}/.test(p.slice(i));
        return false;
    };
    for (let i = 0; i < p.length; i++) {
        const c = p[i];
        let closed = false;
        if (c === "\\") i++;
        else if (c === "[") {
            for (i++; i < p.length && p[i] !== "]"; i++) if (p[i] === "\\") i++;
        } else if (c === "(") groups.push({ risky: false });
        else if (c === ")") {
            lastGroupRisky = groups.pop()?.risky ?? false;
            // A group holding a risky group is risky too: ((a+))+ repeats a repetition.
            if (lastGroupRisky && groups.length > 0) groups[groups.length - 1]!.risky = true;
            closed = true;
        } else if (c === "|") {
            if (groups.length > 0) groups[groups.length - 1]!.risky = true;
        }
        if (quantifierAt(i + 1)) {
            if (closed && lastGroupRisky) {
                throw new LlamaError("ERR_INVALID_OPTION", `grammarTriggers pattern ${JSON.stringify(p)}: a repeated group that itself repeats or branches (like (.|\\s)* or (a+)+) makes llama.cpp's regex search take exponential time; use a character class ([\\s\\S]*) or a single repetition`);
            }
            if (groups.length > 0) groups[groups.length - 1]!.risky = true;
        }
    }
}

/**
 * llama.cpp's GBNF parser checks most errors itself (and we turn those into
 * ERR_INVALID_GRAMMAR), but a repetition {m,n} with n < m makes it loop for ever at this
 * commit (n - m wraps around as an unsigned count). Catch that one here. Skips string
 * literals, character classes and comments, where braces mean nothing.
 */
export function checkGrammarRepetitions(g: string): void {
    for (let i = 0; i < g.length; i++) {
        const c = g[i];
        if (c === "#") {
            while (i < g.length && g[i] !== "\n" && g[i] !== "\r") i++;
        } else if (c === '"' || c === "[") {
            const close = c === '"' ? '"' : "]";
            for (i++; i < g.length && g[i] !== close; i++) if (g[i] === "\\") i++;
        } else if (c === "{") {
            const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(g.slice(i));
            if (m && m[3] && Number(m[3]) < Number(m[1])) {
                throw new LlamaError("ERR_INVALID_GRAMMAR", `invalid GBNF grammar: repetition ${m[0]} has a maximum below its minimum`);
            }
        }
    }
}

/**
 * The chain, in llama.cpp's default order: logit bias, penalties, DRY, then truncation
 * (top-n-sigma, top-k, typical, top-p, min-p, XTC), temperature, and the final pick.
 * Stages that would do nothing are left out. The grammar (if any) runs before all of them.
 */
function buildStages(r: ResolvedSampling, historySize: number): NativeSamplerStage[] {
    const stages: NativeSamplerStage[] = [];
    if (r.logitBias.size > 0) {
        stages.push({ kind: "logit_bias", tokens: Int32Array.from(r.logitBias.keys()), biases: Float32Array.from(r.logitBias.values()) });
    }
    if (r.penaltyLastN > 0 && (r.repeatPenalty !== 1 || r.frequencyPenalty !== 0 || r.presencePenalty !== 0)) {
        stages.push({ kind: "penalties", lastN: r.penaltyLastN, repeat: r.repeatPenalty, frequency: r.frequencyPenalty, presence: r.presencePenalty });
    }
    if (r.dryMultiplier > 0) {
        stages.push({
            kind: "dry", multiplier: r.dryMultiplier, base: r.dryBase, allowedLength: r.dryAllowedLength,
            lastN: r.dryPenaltyLastN === -1 ? historySize : r.dryPenaltyLastN, breakers: r.drySequenceBreakers,
        });
    }
    if (r.temperature === 0) {
        stages.push({ kind: "greedy" });
        return stages;
    }
    const temp: NativeSamplerStage = r.dynatempRange > 0
        ? { kind: "temp_ext", t: r.temperature, delta: r.dynatempRange, exponent: r.dynatempExponent }
        : { kind: "temp", t: r.temperature };
    if (r.mirostat === 1) {
        stages.push(temp, { kind: "mirostat", tau: r.mirostatTau, eta: r.mirostatEta, m: 100, seed: r.seed });
        return stages;
    }
    if (r.mirostat === 2) {
        stages.push(temp, { kind: "mirostat_v2", tau: r.mirostatTau, eta: r.mirostatEta, seed: r.seed });
        return stages;
    }
    if (r.topNSigma > 0) stages.push({ kind: "top_n_sigma", n: r.topNSigma });
    if (r.topK > 0) stages.push({ kind: "top_k", k: r.topK });
    if (r.typicalP < 1) stages.push({ kind: "typical", p: r.typicalP });
    if (r.topP < 1) stages.push({ kind: "top_p", p: r.topP });
    if (r.minP > 0) stages.push({ kind: "min_p", p: r.minP });
    if (r.xtcProbability > 0) stages.push({ kind: "xtc", probability: r.xtcProbability, threshold: r.xtcThreshold, seed: r.seed });
    stages.push(temp, { kind: "dist", seed: r.seed });
    return stages;
}

export interface SampleResult {
    token: number;
    /**
     * Log-probability of the chosen token (with options.logProbs): the log-softmax of the
     * logits the chain left on the candidates it kept, after bias, grammar, penalties,
     * truncation and temperature (removed candidates have probability 0). With temperature
     * 0 nothing is truncated or scaled: these are the model's log-probabilities (after bias,
     * penalties and grammar).
     */
    logProb?: number;
    /** The options.logProbs most likely candidates of that same distribution, best first. */
    top?: { token: number; logProb: number }[];
}

export function toSampleResult(r: NativeSampleResult): SampleResult {
    const out: SampleResult = { token: r.token };
    if (r.logProb !== undefined) {
        out.logProb = r.logProb;
        out.top = Array.from(r.topTokens ?? new Int32Array(0), (token: number, i: number) => ({ token, logProb: r.topLogProbs![i]! }));
    }
    return out;
}

// ---- giving up on a chain being built ----------------------------------------------------------

// Abort flags of every chain being built in this thread. Node's exit joins the libuv pool, where
// a build's worker waits for llama.cpp's grammar constructor: process.exit() waited for the
// build (15 s with a 15 s build). On exit every flag is raised, so the workers return at once.
const building = new Set<Int32Array>();
let exitHookInstalled = false;

/** An abort flag for NativeSampler.create, raised by `signal` or by process exit. */
function buildFlag(signal?: AbortSignal): { flag: Int32Array; release: () => void } {
    if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.once("exit", () => {
            for (const f of building) Atomics.store(f, 0, 1);
        });
    }
    const abort = abortFlag(signal);
    building.add(abort.flag);
    return {
        flag: abort.flag,
        release: () => {
            abort.release();
            building.delete(abort.flag);
        },
    };
}

// ---- per-context chains ----------------------------------------------------------------------

/** Most chains kept per context; the least recently used idle one is dropped beyond this. */
const MAX_CHAINS_PER_CONTEXT = 16;

/**
 * A context's sampler chains, one per (sequence, option set), built on first use and reused
 * so that their state (penalty history, grammar position, RNG) carries over between calls
 * with the same options. Owned by the context, which frees them in its dispose().
 * @internal
 */
export class SamplerChains {
    readonly #ctx: Context;
    // Insertion order is recency order: most recently used last.
    readonly #chains = new Map<string, { sequence: number; chain: Promise<NativeSampler> }>();
    // Abort flags of the chains being built, and whether dispose() has raised them.
    readonly #building = new Set<Int32Array>();
    #aborted = false;

    constructor(ctx: Context) {
        this.#ctx = ctx;
    }

    /**
     * The chain for (sequence, config). Call from inside a context job. `signal` gives up on a
     * chain still being built (a grammar llama.cpp is slow to build): ERR_ABORTED at once.
     */
    get(sequence: number, config: ResolvedSamplingConfig, signal?: AbortSignal): Promise<NativeSampler> {
        const key = `${sequence}\u0000${config.key}`;
        const hit = this.#chains.get(key);
        if (hit) {
            this.#chains.delete(key);
            this.#chains.set(key, hit);
            return hit.chain;
        }
        if (signal?.aborted) return Promise.reject(abortedError("creating the sampler", signal.reason));
        const native = this.#ctx.model.native;
        const abort = buildFlag(signal);
        if (this.#aborted) Atomics.store(abort.flag, 0, 1);
        this.#building.add(abort.flag);
        const chain = callNative(() => binding().NativeSampler.create(native, boundHistory(config.native, this.#ctx.contextSize), abort.flag)).then(
            (n) => n,
            (err: unknown) => {
                throw this.#aborted && (err as LlamaError).code === "ERR_ABORTED" ? disposedError("context") : err;
            },
        );
        const settled = () => {
            abort.release();
            this.#building.delete(abort.flag);
        };
        chain.then(settled, settled);
        this.#chains.set(key, { sequence, chain });
        chain.catch(() => this.#chains.delete(key));
        if (this.#chains.size > MAX_CHAINS_PER_CONTEXT) {
            // The least recently used chain of a sequence that is not generating (a running
            // generation holds its chain until it ends).
            for (const [k, v] of this.#chains) {
                if (k === key || this.#ctx.sequenceBusy(v.sequence)) continue;
                this.#chains.delete(k);
                // Freed once the calls queued before now are done (calls are serialized per context).
                void this.#ctx.enqueue(async () => (await v.chain.catch(() => null))?.dispose()).catch(() => {});
                break;
            }
        }
        return chain;
    }

    /** Resets the chains of one sequence (or all). Call from inside a context job. */
    async reset(sequence?: number): Promise<void> {
        for (const v of this.#chains.values()) {
            if (sequence === undefined || v.sequence === sequence) (await v.chain.catch(() => null))?.reset();
        }
    }

    /**
     * Gives up on the chains being built, now and later (the context is being disposed: its
     * dispose() must not wait for a grammar build). Their callers get ERR_DISPOSED.
     */
    abortPending(): void {
        this.#aborted = true;
        for (const flag of this.#building) Atomics.store(flag, 0, 1);
    }

    /** Frees every chain (the context is being disposed; no call uses them any more). */
    async disposeAll(): Promise<void> {
        const all = [...this.#chains.values()];
        this.#chains.clear();
        for (const v of all) {
            const n = await v.chain.catch(() => null);
            try {
                n?.dispose();
            } catch {
                // Still marked busy by a call that is ending: its finalizer frees it.
            }
        }
    }
}

/**
 * penaltyLastN and dryPenaltyLastN size ring buffers that llama.cpp allocates in full when the
 * chain is built (2^31-1 allocated gigabytes). A sequence's history never holds more tokens than
 * its context, so a context's chains are bounded by the context size (native code bounds the
 * rest by the model's training context).
 */
function boundHistory(n: ResolvedSamplingConfig["native"], contextSize: number): ResolvedSamplingConfig["native"] {
    const stages = n.stages.map((s) => ((s.kind === "penalties" || s.kind === "dry") && s.lastN > contextSize ? { ...s, lastN: contextSize } : s));
    return { ...n, stages };
}

/**
 * The chain for (context, sequence, option set), built on first use and kept by the context
 * (the same as ctx.samplerFor; kept for callers of the earlier module-level cache).
 * @internal
 */
export function contextSampler(ctx: Context, sequence: number, config: ResolvedSamplingConfig): Promise<NativeSampler> {
    return ctx.samplerFor(sequence, config);
}

/** ctx.sample(): one token from a sequence's last logits. */
export function sampleContext(ctx: Context, sequence: number, options?: SamplingOptions): Promise<SampleResult> {
    let config: ResolvedSamplingConfig;
    let seq: number;
    try {
        seq = ctx.checkSequence("sequence", sequence);
        config = resolveSampling(options, ctx.model.info.vocabSize, ctx.contextSize);
        ctx.checkSequenceIdle(seq, "sample");
    } catch (err) {
        return Promise.reject(err);
    }
    return ctx.enqueue(async (native) => {
        const sampler = await ctx.samplerFor(seq, config);
        return toSampleResult(await sampler.sample(native, seq, config.options.logProbs));
    });
}

/**
 * Forgets the sampling state (penalty history, grammar position, RNG draws) of a context's
 * chains, for one sequence or all: the next sample starts as if the chain were new.
 * The same as ctx.resetSampling(sequence).
 */
export function resetSampling(ctx: Context, sequence?: number): Promise<void> {
    return ctx.resetSampling(sequence);
}

// ---- a chain over logits given directly -------------------------------------------------------

/**
 * A sampler chain used on logits you supply (e.g. from ctx.forward(), or synthetic ones).
 * Calls run one at a time, in order.
 */
export class Sampler {
    readonly options: ResolvedSampling;
    readonly vocabSize: number;
    readonly #model: Model;
    #native: NativeSampler | null;
    #tail: Promise<unknown> = Promise.resolve();
    #disposing: Promise<void> | null = null;

    /** @internal use createSampler() */
    constructor(native: NativeSampler, options: ResolvedSampling, model: Model) {
        this.#native = native;
        this.options = options;
        this.#model = model;
        this.vocabSize = model.info.vocabSize;
    }

    #run<T>(job: (n: NativeSampler) => Promise<T> | T): Promise<T> {
        // Tracked by the model from the start, so that its dispose() waits for this call.
        const p = this.#model.track(this.#tail.then(() => {
            if (!this.#native) throw new LlamaError("ERR_DISPOSED", "the sampler is disposed");
            const n = this.#native;
            return callNative(async () => job(n));
        }));
        this.#tail = p.catch(() => {});
        return p;
    }

    /** Picks a token from `logits` (vocabSize floats) and records it in the chain's history. */
    sample(logits: Float32Array): Promise<SampleResult> {
        if (!(logits instanceof Float32Array) || logits.length !== this.vocabSize) {
            return Promise.reject(invalidOption("logits", `a Float32Array of ${this.vocabSize} values`, logits));
        }
        return this.#run(async (n) => toSampleResult(await n.sampleLogits(logits, this.options.logProbs)));
    }

    /** Forgets penalty history and grammar position; the RNG restarts from the seed. */
    reset(): Promise<void> {
        return this.#run((n) => n.reset());
    }

    /** Frees the chain once the calls already queued are done. Idempotent, like Model and Context. */
    dispose(): Promise<void> {
        this.#disposing ??= this.#run((n) => {
            n.dispose();
            this.#native = null;
        });
        return this.#disposing;
    }
}

/**
 * Builds a sampler chain for `model`'s vocabulary from sampling options. `signal` gives up on a
 * chain still being built (a grammar llama.cpp is slow to build): ERR_ABORTED at once.
 */
export async function createSampler(model: Model, options?: SamplingOptions & { signal?: AbortSignal }): Promise<Sampler> {
    const config = resolveSampling(options, model.info.vocabSize, 4096, ["signal"], "createSampler");
    const signal = optSignal(optionsObject("options", options));
    if (signal?.aborted) throw abortedError("createSampler", signal.reason);
    const native = model.native;
    const abort = buildFlag(signal);
    try {
        const n = await model.track(callNative(() => binding().NativeSampler.create(native, config.native, abort.flag)));
        return new Sampler(n, config.options, model);
    } finally {
        abort.release();
    }
}
