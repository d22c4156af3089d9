// One REPL conversation, independent of where lines come from: each line is a slash command
// or a turn. Chat mode (the model has a chat template) is a thin client of ChatSession, which
// keeps the history, reuses the cached prefix and drops old turns when the context fills;
// completion mode treats each line as a new prompt, and generate()'s prompt cache reuses what
// it shares with the last one.
import type { ChatSession } from "../chat/session.js";
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
    /** Chat mode: the conversation (on sequence 0 of #ctx). */
    #session: ChatSession | null = null;
    #current: AbortController | null = null;
    #last: (TimedGeneration & { beams: number }) | null = null;
    /** Rates are summed over the answers that had a measurable span (see turnTiming). */
    #total = { promptTokens: 0, promptSeconds: 0, genTokens: 0, rateTokens: 0, genSeconds: 0, turns: 0 };

    private constructor(model: Model, ctx: Context, opts: ReplSessionOptions) {
        this.model = model;
        this.#ctx = ctx;
        this.#opts = opts;
        this.chat = opts.chat ?? model.info.chatTemplate !== null;
        this.sampling = { ...opts.sampling };
        this.maxTokens = opts.maxTokens;
        resolveSampling(this.sampling, model.info.vocabSize); // bad flags fail before the first turn
    }

    static async create(model: Model, opts: ReplSessionOptions): Promise<ReplSession> {
        const r = new ReplSession(model, await opts.openContext(1), opts);
        if (r.chat) await r.#openChat(opts.system ? [{ role: "system", content: opts.system }] : []);
        return r;
    }

    async #openChat(history: { role: string; content: string }[]): Promise<void> {
        this.#session = await this.model.createChatSession({ context: this.#ctx, sequence: 0 });
        this.#session.history = history;
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
        } finally {
            this.#current = null;
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
                    const history = this.#session?.history;
                    await this.#ctx.dispose();
                    this.#ctx = wider;
                    if (history) await this.#openChat(history as { role: string; content: string }[]);
                }
                this.beams = v <= 1 ? 0 : v;
                return w(this.beams ? `beam search, ${v} beams` : "beam search off");
            }
            case "/reset":
                if (this.#session) this.#session.history = this.#session.history.filter((m) => m.role === "system");
                await this.#ctx.kv.clear();
                return w("context cleared");
            case "/stats": return w(await this.#statsText());
            case "/help": return w(REPL_HELP);
            case "/quit":
            case "/exit":
                return "quit";
            default:
                return w(`unknown command ${name}; /help lists them`);
        }
    }

    async #statsText(): Promise<string> {
        const used = (await this.#ctx.kv.positions(0)).max + 1;
        const t = this.#total;
        const last = this.#last;
        const s = this.sampling;
        const lines = [
            last
                ? `last answer: prompt ${last.promptTokens} new tokens at ${formatRate(last.promptTokensPerSecond)} t/s, ${last.tokens.length} generated at ${formatRate(last.tokensPerSecond)} t/s${last.beams ? ` (beam search, ${last.beams} beams)` : ""}`
                : "last answer: none yet",
            `total: ${t.turns} answers, prompt ${t.promptTokens} tokens at ${formatRate(t.promptSeconds > 0 ? t.promptTokens / t.promptSeconds : null)} t/s, generation ${t.genTokens} tokens at ${formatRate(t.genSeconds > 0 ? t.rateTokens / t.genSeconds : null)} t/s`,
            `context: ${used} / ${this.#ctx.contextSize} tokens used (${((100 * used) / this.#ctx.contextSize).toFixed(1)}%), ${this.#ctx.threads} threads, ${this.#ctx.attention} attention`,
            `mode: ${this.chat ? "chat" : "completion"}; sampling: temperature ${s.temperature ?? 0.8}, top-k ${s.topK ?? 40}, top-p ${s.topP ?? 0.95}, min-p ${s.minP ?? 0.05}, seed ${s.seed ?? "random"}${this.beams ? `, ${this.beams} beams` : ""}`,
        ];
        return lines.join("\n");
    }

    // --- turns ---------------------------------------------------------------------------

    async #turn(line: string): Promise<void> {
        const controller = new AbortController();
        this.#current = controller;
        let result: TimedGeneration;
        if (this.beams > 0) result = await this.#beamTurn(line, controller.signal);
        else if (this.#session) result = await this.#chatTurn(this.#session, line, controller.signal);
        else result = await this.#completionTurn(line, controller.signal);
        this.#last = { ...result, beams: this.beams };
        const t = this.#total;
        t.turns++;
        t.promptTokens += result.promptTokens;
        if (result.promptTokensPerSecond) t.promptSeconds += result.promptTokens / result.promptTokensPerSecond;
        t.genTokens += result.tokens.length;
        if (result.tokensPerSecond && result.tokens.length > 1) {
            t.rateTokens += result.tokens.length - 1;
            t.genSeconds += (result.tokens.length - 1) / result.tokensPerSecond;
        }
    }

    /** Ends an answer's line, saying why it stopped when that was not the model's choice. */
    #endAnswer(reason: string): void {
        const notes: Record<string, string> = {
            aborted: " [stopped]",
            contextFull: " [the context is full: /reset to start over]",
        };
        this.#opts.write((notes[reason] ?? "") + "\n");
    }

    async #chatTurn(session: ChatSession, line: string, signal: AbortSignal): Promise<TimedGeneration> {
        const partial = newPartial();
        let reason = "eog";
        let promptTokens = 0;
        try {
            const it = session.stream(line, { ...this.sampling, maxTokens: this.maxTokens, signal });
            for (;;) {
                const r = await it.next();
                if (r.done) {
                    reason = r.value.stopReason;
                    promptTokens = r.value.stats.evaluatedTokens;
                    if (r.value.stats.droppedMessages > 0) this.#opts.write(` [${r.value.stats.droppedMessages} oldest messages left the context]`);
                    break;
                }
                const d = r.value;
                if (d.type === "toolCall") continue;
                partial.last = performance.now();
                if (partial.tokens.length === 0) partial.first = partial.last;
                if (partial.tokens.at(-1) !== d.token) partial.tokens.push(d.token);
                partial.text += d.text;
                this.#opts.write(d.type === "reasoning" ? `\x1b[2m${d.text}\x1b[0m` : d.text);
            }
        } catch (err) {
            if (!(err instanceof LlamaError && (err.code === "ERR_ABORTED" || err.code === "ERR_CONTEXT_FULL"))) throw err;
            reason = err.code === "ERR_ABORTED" ? "aborted" : "contextFull";
            if (reason === "contextFull" && partial.tokens.length === 0) this.#opts.write(`(${err.message})`);
        }
        this.#endAnswer(reason);
        return finishGeneration(partial, promptTokens, reason);
    }

    async #completionTurn(line: string, signal: AbortSignal): Promise<TimedGeneration> {
        // The whole line is the prompt; generate() keeps the prefix it shares with the cache.
        const prompt = await this.model.tokenize(line);
        const partial = newPartial();
        let result: TimedGeneration;
        try {
            result = await timedGenerate(this.#ctx, prompt, { ...this.sampling, maxTokens: this.maxTokens, signal }, (t) => this.#opts.write(t), partial);
        } catch (err) {
            if (!(err instanceof LlamaError && (err.code === "ERR_ABORTED" || err.code === "ERR_CONTEXT_FULL"))) throw err;
            result = finishGeneration(partial, prompt.length, err.code === "ERR_ABORTED" ? "aborted" : "contextFull");
        }
        this.#endAnswer(result.reason);
        return result;
    }

    async #beamTurn(line: string, signal: AbortSignal): Promise<TimedGeneration> {
        const history = this.#session?.history;
        const prompt = history
            ? await this.model.tokenizeChat([...history, { role: "user", content: line }])
            : await this.model.tokenize(line);
        const room = this.#ctx.contextSize - prompt.length;
        if (room < 1) {
            this.#opts.write(`(the prompt is ${prompt.length} tokens: it does not fit the ${this.#ctx.contextSize}-token context)\n`);
            return { text: "", tokens: [], promptTokens: prompt.length, reason: "contextFull", promptTokensPerSecond: null, tokensPerSecond: null };
        }
        const started = performance.now();
        try {
            // Beam search uses (and clears) sequences 0..beams-1: nothing stays cached.
            const [best] = await this.#ctx.beamSearch(prompt, { beams: this.beams, maxTokens: Math.min(this.maxTokens, room), signal });
            const seconds = (performance.now() - started) / 1000;
            const text = best?.text ?? "";
            this.#opts.write(text + "\n");
            if (this.#session && history) this.#session.history = [...history, { role: "user", content: line }, { role: "assistant", content: text }];
            const tokens = best?.tokens ?? [];
            return { text, tokens, promptTokens: prompt.length, reason: "beam", promptTokensPerSecond: null, tokensPerSecond: tokens.length / seconds };
        } catch (err) {
            if (!(err instanceof LlamaError && err.code === "ERR_ABORTED")) throw err;
            this.#opts.write("[stopped]\n");
            return { text: "", tokens: [], promptTokens: prompt.length, reason: "aborted", promptTokensPerSecond: null, tokensPerSecond: null };
        } finally {
            await this.#ctx.kv.clear();
        }
    }
}
