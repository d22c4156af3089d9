// One REPL conversation, independent of where lines come from: each line is a slash command
// or a turn. Chat mode (the model has a chat template) keeps a conversation; completion mode
// treats each line as a new prompt. Either way the KV cache keeps the longest prefix the
// next prompt shares with what is already decoded, so a turn only decodes what is new.
import type { Context } from "../context.js";
import { LlamaError } from "../errors.js";
import type { Model } from "../model.js";
import { resolveSampling, type SamplingOptions } from "../sampling.js";
import { finishGeneration, formatRate, newPartial, timedGenerate, type TimedGeneration } from "./generate.js";

export interface ReplSessionOptions {
    /** Most tokens per answer. */
    maxTokens: number;
    sampling: SamplingOptions;
    /** Chat mode; default: when the model has a chat template. */
    chat?: boolean;
    /** System message for chat mode. */
    system?: string;
    /** Where answers and command output go. */
    write: (text: string) => void;
    /** Opens a context with at least this many sequences (beam search needs one per beam). */
    openContext: (sequences: number) => Promise<Context>;
}

type Message = { role: string; content: string };

export const REPL_HELP = [
    "commands:",
    "  /temp <t>     temperature (0 = greedy)",
    "  /topk <k>     keep the k most likely tokens (0 = off)",
    "  /topp <p>     nucleus sampling (1 = off)",
    "  /minp <p>     min-p sampling (0 = off)",
    "  /seed <n>     RNG seed (restarts the random sequence)",
    "  /greedy       always pick the most likely token",
    "  /beam <n>     beam search with n beams (0 or 1 = off; answers are not streamed)",
    "  /reset        forget the conversation and clear the context",
    "  /stats        tokens/s of the last answer and in total, context used",
    "  /help         this list",
    "  /quit         leave (also Ctrl-D)",
    "Ctrl-C stops an answer that is being generated.",
].join("\n");

export class ReplSession {
    readonly model: Model;
    readonly chat: boolean;
    sampling: SamplingOptions;
    maxTokens: number;
    beams = 0;
    #ctx: Context;
    #opts: ReplSessionOptions;
    #messages: Message[] = [];
    /** Tokens held in the KV cache of sequence 0, from position 0. */
    #cached: number[] = [];
    #current: AbortController | null = null;
    #last: (TimedGeneration & { beams: number }) | null = null;
    #total = { promptTokens: 0, promptSeconds: 0, genTokens: 0, genSeconds: 0, turns: 0 };

    private constructor(model: Model, ctx: Context, opts: ReplSessionOptions) {
        this.model = model;
        this.#ctx = ctx;
        this.#opts = opts;
        this.chat = opts.chat ?? model.info.chatTemplate !== null;
        this.sampling = { ...opts.sampling };
        this.maxTokens = opts.maxTokens;
        if (this.chat && opts.system) this.#messages.push({ role: "system", content: opts.system });
        resolveSampling(this.sampling, model.info.vocabSize); // bad flags fail before the first turn
    }

    static async create(model: Model, opts: ReplSessionOptions): Promise<ReplSession> {
        return new ReplSession(model, await opts.openContext(1), opts);
    }

    get context(): Context {
        return this.#ctx;
    }

    get generating(): boolean {
        return this.#current !== null;
    }

    /** Stops the answer being generated (Ctrl-C); false when there was none. */
    interrupt(): boolean {
        if (!this.#current) return false;
        this.#current.abort();
        return true;
    }

    /** Handles one input line; resolves to "quit" when the session should end. */
    async handle(line: string): Promise<"quit" | void> {
        const text = line.trim();
        if (text === "") return;
        if (text.startsWith("/")) return this.#command(text);
        try {
            await this.#turn(line);
        } catch (err) {
            // The cache may hold part of a failed turn: start the next one from a clean slate.
            this.#current = null;
            this.#cached = [];
            if (this.chat && this.#messages.at(-1)?.role === "user") this.#messages.pop();
            await this.#ctx.kv.clear().catch(() => {});
            throw err;
        }
    }

    async dispose(): Promise<void> {
        await this.#ctx.dispose();
    }

    // --- slash commands ----------------------------------------------------------------

    async #command(text: string): Promise<"quit" | void> {
        const [name, ...args] = text.split(/\s+/);
        const w = (s: string) => this.#opts.write(s + "\n");
        const num = (usage: string): number | null => {
            const v = Number(args[0]);
            if (args.length !== 1 || args[0] === "" || !Number.isFinite(v)) {
                w(`usage: ${usage}`);
                return null;
            }
            return v;
        };
        const set = (patch: SamplingOptions, said: string) => {
            const next = { ...this.sampling, ...patch };
            try {
                resolveSampling(next, this.model.info.vocabSize);
            } catch (err) {
                w(`${(err as Error).message}`);
                return;
            }
            this.sampling = next;
            w(said);
        };
        switch (name) {
            case "/temp": { const v = num("/temp <number>"); if (v !== null) set({ temperature: v }, `temperature ${v}`); return; }
            case "/topk": { const v = num("/topk <integer>"); if (v !== null) set({ topK: v }, `top-k ${v}`); return; }
            case "/topp": { const v = num("/topp <number>"); if (v !== null) set({ topP: v }, `top-p ${v}`); return; }
            case "/minp": { const v = num("/minp <number>"); if (v !== null) set({ minP: v }, `min-p ${v}`); return; }
            case "/seed": { const v = num("/seed <integer>"); if (v !== null) set({ seed: v }, `seed ${v}`); return; }
            case "/greedy": set({ temperature: 0 }, "greedy (temperature 0)"); return;
            case "/beam": {
                const v = num("/beam <n> (0 = off)");
                if (v === null) return;
                if (!Number.isInteger(v) || v < 0 || v > 64) return w("usage: /beam <n> with n from 0 to 64");
                if (v > this.#ctx.sequences) {
                    // Beam search runs each beam as a sequence of the context: open a wider one.
                    const wider = await this.#opts.openContext(v);
                    await this.#ctx.dispose();
                    this.#ctx = wider;
                    this.#cached = [];
                }
                this.beams = v <= 1 ? 0 : v;
                return w(this.beams ? `beam search, ${v} beams` : "beam search off");
            }
            case "/reset":
                this.#messages = this.#messages.filter((m) => m.role === "system");
                this.#cached = [];
                await this.#ctx.kv.clear();
                return w("context cleared");
            case "/stats": return w(this.#statsText());
            case "/help": return w(REPL_HELP);
            case "/quit":
            case "/exit":
                return "quit";
            default:
                return w(`unknown command ${name}; /help lists them`);
        }
    }

    #statsText(): string {
        const t = this.#total;
        const last = this.#last;
        const s = this.sampling;
        const lines = [
            last
                ? `last answer: prompt ${last.promptTokens} new tokens at ${formatRate(last.promptTokensPerSecond)} t/s, ${last.tokens.length} generated at ${formatRate(last.tokensPerSecond)} t/s${last.beams ? ` (beam search, ${last.beams} beams)` : ""}`
                : "last answer: none yet",
            `total: ${t.turns} answers, prompt ${t.promptTokens} tokens at ${formatRate(t.promptSeconds > 0 ? t.promptTokens / t.promptSeconds : null)} t/s, generation ${t.genTokens} tokens at ${formatRate(t.genSeconds > 0 ? t.genTokens / t.genSeconds : null)} t/s`,
            `context: ${this.#cached.length} / ${this.#ctx.contextSize} tokens used (${((100 * this.#cached.length) / this.#ctx.contextSize).toFixed(1)}%), ${this.#ctx.threads} threads, ${this.#ctx.attention} attention`,
            `mode: ${this.chat ? "chat" : "completion"}; sampling: temperature ${s.temperature ?? 0.8}, top-k ${s.topK ?? 40}, top-p ${s.topP ?? 0.95}, min-p ${s.minP ?? 0.05}, seed ${s.seed ?? "random"}${this.beams ? `, ${this.beams} beams` : ""}`,
        ];
        return lines.join("\n");
    }

    // --- turns ---------------------------------------------------------------------------

    /** The tokens of the whole prompt for this turn (chat: the conversation so far). */
    async #promptTokens(line: string): Promise<number[]> {
        if (!this.chat) return Array.from(await this.model.tokenize(line));
        this.#messages.push({ role: "user", content: line });
        // Drop the oldest exchanges while the conversation leaves no room for an answer.
        for (;;) {
            const text = this.model.applyChatTemplate(this.#messages, { addAssistant: true });
            const tokens = Array.from(await this.model.tokenize(text, { parseSpecial: true }));
            const firstUser = this.#messages.findIndex((m) => m.role !== "system");
            const room = this.#ctx.contextSize - tokens.length;
            if (room >= Math.min(this.maxTokens, 64) || firstUser === this.#messages.length - 1) return tokens;
            this.#messages.splice(firstUser, 2);
        }
    }

    async #turn(line: string): Promise<void> {
        const prompt = await this.#promptTokens(line);
        const room = this.#ctx.contextSize - prompt.length;
        if (room < 1) {
            if (this.chat) this.#messages.pop();
            this.#opts.write(`(the prompt is ${prompt.length} tokens: it does not fit the ${this.#ctx.contextSize}-token context)\n`);
            return;
        }
        const maxTokens = Math.min(this.maxTokens, room);
        let result: TimedGeneration;
        if (this.beams > 0) result = await this.#beamTurn(prompt, maxTokens);
        else result = await this.#streamTurn(prompt, maxTokens);
        if (this.chat) this.#messages.push({ role: "assistant", content: result.text });
        this.#last = { ...result, beams: this.beams };
        this.#total.turns++;
        this.#total.promptTokens += result.promptTokens;
        if (result.promptTokensPerSecond) this.#total.promptSeconds += result.promptTokens / result.promptTokensPerSecond;
        if (result.tokensPerSecond && result.tokens.length > 1) {
            this.#total.genTokens += result.tokens.length - 1;
            this.#total.genSeconds += (result.tokens.length - 1) / result.tokensPerSecond;
        }
    }

    async #streamTurn(prompt: number[], maxTokens: number): Promise<TimedGeneration> {
        // Keep the shared prefix; at least one token must be decoded to have logits to sample.
        let keep = 0;
        while (keep < this.#cached.length && keep < prompt.length - 1 && this.#cached[keep] === prompt[keep]) keep++;
        if (keep < this.#cached.length) await this.#ctx.kv.remove(0, keep, -1);
        const fresh = prompt.slice(keep);
        this.#cached = prompt.slice(0, keep);
        const controller = new AbortController();
        this.#current = controller;
        const partial = newPartial();
        let result: TimedGeneration;
        try {
            result = await timedGenerate(this.#ctx, fresh, { ...this.sampling, maxTokens, signal: controller.signal }, (t) => this.#opts.write(t), partial);
            this.#opts.write("\n");
        } catch (err) {
            if (!(err instanceof LlamaError && err.code === "ERR_ABORTED")) throw err;
            this.#opts.write(" [stopped]\n");
            result = finishGeneration(partial, fresh.length, "aborted");
        } finally {
            this.#current = null;
        }
        // What the cache holds now: the prompt and every generated token it kept (an
        // end-of-generation token is not decoded; an interrupted answer keeps what was shown).
        const held = (await this.#ctx.kv.positions(0)).max + 1;
        this.#cached = [...prompt, ...partial.tokens].slice(0, held);
        if (this.#cached.length < held) {
            // Tokens we did not see (an interrupted answer): drop them so the record is exact.
            await this.#ctx.kv.remove(0, this.#cached.length, -1);
        }
        return result;
    }

    async #beamTurn(prompt: number[], maxTokens: number): Promise<TimedGeneration> {
        const controller = new AbortController();
        this.#current = controller;
        const started = performance.now();
        try {
            // Beam search uses (and clears) sequences 0..beams-1: nothing stays cached.
            this.#cached = [];
            const [best] = await this.#ctx.beamSearch(prompt, { beams: this.beams, maxTokens, signal: controller.signal });
            const seconds = (performance.now() - started) / 1000;
            const text = best?.text ?? "";
            this.#opts.write(text + "\n");
            const tokens = best?.tokens ?? [];
            return { text, tokens, promptTokens: prompt.length, reason: "beam", promptTokensPerSecond: null, tokensPerSecond: tokens.length / seconds };
        } catch (err) {
            if (!(err instanceof LlamaError && err.code === "ERR_ABORTED")) throw err;
            this.#opts.write("[stopped]\n");
            return { text: "", tokens: [], promptTokens: prompt.length, reason: "aborted", promptTokensPerSecond: null, tokensPerSecond: null };
        } finally {
            this.#current = null;
            await this.#ctx.kv.clear();
        }
    }
}
