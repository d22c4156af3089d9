// ChatSession: a conversation on one sequence of a context. Each turn renders the whole
// conversation with the model's template and hands it to ctx.generate(), whose prompt cache
// keeps the longest prefix already in the sequence and evaluates only the rest. Replies are
// parsed by the template format's own parser into content, reasoning and tool calls.
import type { Context, ContextOptions } from "../context.js";
import { LlamaError, abortedError, disposedError } from "../errors.js";
import type { GenerateSummary } from "../generate.js";
import type { Model } from "../model.js";
import { SAMPLING_KEYS, type SamplingOptions } from "../sampling.js";
import { checkKnownKeys, invalidOption, is, optBool, optEnum, optInt, optSignal, optionsObject } from "../validate.js";
import { normalizeMessage, normalizeMessages, normalizeTools, resolveToolChoice, type ChatMessage, type ChatTool, type ToolChoice } from "./messages.js";
import { replyConstraints } from "./constraints.js";
import { ReplyParser, type ReplyDelta } from "./reply.js";
import type { ChatTemplates, PromptTokenCache, RenderedChat, RenderRequest } from "./templates.js";

export interface ChatSessionOptions extends ContextOptions {
    /** A system prompt, kept through context shifts. */
    system?: string;
    /** Tools the model may call (OpenAI function tools). */
    tools?: ChatTool[];
    /** A chat template: Jinja source, a GGUF variant name (e.g. "tool_use") or a llama.cpp built-in name. @default the model's own */
    template?: string;
    /** Run on this context (shared; the session does not dispose it) instead of a new one. */
    context?: Context;
    /** The sequence of `context` the session uses. @default 0 */
    sequence?: number;
    /**
     * When the conversation no longer fits: "dropOldest" keeps the system prompt and the
     * latest turns and drops the oldest whole turns (a turn is a user message and all that
     * follows it up to the next one); "error" throws ERR_CONTEXT_FULL instead. @default "dropOldest"
     */
    contextShift?: "dropOldest" | "error";
    /** Keep reasoning (thinking) in the history that later turns render. @default false */
    keepReasoning?: boolean;
    /** Let reasoning models think (templates that can switch it off). @default true */
    enableThinking?: boolean;
}

export interface ChatSendOptions extends SamplingOptions {
    /** Most tokens in the reply. @default 512 */
    maxTokens?: number;
    signal?: AbortSignal;
    /** "auto": the model decides; "none": no calls; "required": at least one call; { name }: that function. @default "auto" */
    toolChoice?: ToolChoice;
    /** Tools for this turn only (instead of the session's). */
    tools?: ChatTool[];
    /** Extra stop strings (the template's end-of-turn tokens always stop). */
    stop?: string | string[];
}

export type ChatStopReason = "eog" | "stop" | "maxTokens" | "toolCalls";

export interface ChatToolCallResult {
    id: string;
    name: string;
    /** JSON text, as the model wrote it (and as OpenAI returns it). */
    arguments: string;
}

export interface ChatStats {
    /** Tokens of the rendered conversation this turn. */
    promptTokens: number;
    /** Of those, already in the sequence's cache. */
    reusedTokens: number;
    /** Of those, evaluated this turn. */
    evaluatedTokens: number;
    generatedTokens: number;
    /** Oldest turns dropped this turn to fit the context. */
    droppedMessages: number;
}

export interface ChatResponse {
    text: string;
    reasoning: string;
    toolCalls: ChatToolCallResult[];
    stopReason: ChatStopReason;
    stats: ChatStats;
    /** The assistant message as it went into the history. */
    message: ChatMessage;
}

/** One streamed piece: text, reasoning or a tool call's progress, never mixed. */
export type ChatDelta =
    | { type: "text"; text: string; token: number }
    | { type: "reasoning"; text: string; token: number }
    /** A new call carries its id and name; later deltas of it, only what its arguments grew by (as OpenAI streams them). */
    | { type: "toolCall"; index: number; id?: string; name?: string; arguments: string };

export interface ChatRunOptions extends ChatSendOptions {
    /** The functions the model may call, by tool name; each gets the parsed arguments. */
    functions: Record<string, (args: unknown) => unknown>;
    /** Most model turns before giving up. @default 8 */
    maxRounds?: number;
}

const SESSION_KEYS = ["system", "tools", "template", "context", "sequence", "contextShift", "keepReasoning", "enableThinking"] as const;
const SEND_KEYS = ["maxTokens", "signal", "toolChoice", "tools", "stop"] as const;
const RESERVED_FOR_REPLY = 0.25; // of the context, kept free for the reply when history is dropped

export class ChatSession {
    readonly context: Context;
    readonly sequence: number;
    readonly #model: Model;
    readonly #templates: ChatTemplates;
    readonly #ownsContext: boolean;
    readonly #contextShift: "dropOldest" | "error";
    readonly #keepReasoning: boolean;
    readonly #enableThinking: boolean;
    #tools: ChatTool[] | undefined;
    #messages: ChatMessage[] = [];
    /** Index of the first non-system message the prompt still renders (older ones were shifted out). */
    #windowStart = 0;
    #busy = false;
    #disposed = false;
    /** The last prompt's tokens: the next turn tokenizes only what changed. */
    readonly #tokenCache: PromptTokenCache = {};

    /** @internal use model.createChatSession() */
    constructor(model: Model, templates: ChatTemplates, context: Context, ownsContext: boolean, o: Record<string, unknown>) {
        this.#model = model;
        this.#templates = templates;
        this.context = context;
        this.#ownsContext = ownsContext;
        this.sequence = context.checkSequence("sequence", o.sequence ?? 0);
        this.#contextShift = optEnum(o, "contextShift", "dropOldest", ["dropOldest", "error"] as const);
        this.#keepReasoning = optBool(o, "keepReasoning", false);
        this.#enableThinking = optBool(o, "enableThinking", true);
        this.#tools = normalizeTools(o.tools);
        if (o.system !== undefined) {
            if (!is.string(o.system)) throw invalidOption("system", "a string", o.system);
            this.#messages.push({ role: "system", content: o.system });
        }
    }

    /** @internal the option keys createChatSession takes besides the context's */
    static readonly keys = SESSION_KEYS;

    /** A copy of the conversation (system prompt first). */
    get history(): ChatMessage[] {
        return structuredClone(this.#messages);
    }

    /** Replaces the conversation (e.g. truncated or edited); the cache reuses what still matches. */
    set history(messages: ChatMessage[]) {
        this.#checkIdle();
        this.#messages = normalizeMessages(messages);
        this.#windowStart = 0;
    }

    /** Keeps the first `count` messages and drops the rest. */
    truncate(count: number): void {
        if (!is.integer(count) || count < 0) throw invalidOption("count", "a non-negative integer", count);
        this.#checkIdle();
        this.#messages = this.#messages.slice(0, count);
        this.#windowStart = Math.min(this.#windowStart, this.#messages.length);
    }

    get tools(): ChatTool[] | undefined {
        return this.#tools && structuredClone(this.#tools);
    }

    set tools(tools: ChatTool[] | undefined) {
        this.#tools = normalizeTools(tools);
    }

    /**
     * A new session on another sequence of the same context with a copy of this history.
     * The cache is copied too (kv.copy), so the fork's first turn reuses it.
     */
    async fork(sequence: number): Promise<ChatSession> {
        this.#checkIdle();
        const seq = this.context.checkSequence("sequence", sequence);
        if (seq === this.sequence) throw invalidOption("sequence", "a sequence other than this session's", sequence);
        const twin = new ChatSession(this.#model, this.#templates, this.context, false, {
            sequence: seq, contextShift: this.#contextShift, keepReasoning: this.#keepReasoning, enableThinking: this.#enableThinking, tools: this.#tools,
        });
        twin.#messages = structuredClone(this.#messages);
        twin.#windowStart = this.#windowStart;
        await this.context.kv.remove(seq);
        await this.context.kv.copy(this.sequence, seq);
        return twin;
    }

    /** Sends a user message (or any message, e.g. a tool result) and waits for the whole reply. */
    async send(message: string | ChatMessage | ChatMessage[], options?: ChatSendOptions): Promise<ChatResponse> {
        const it = this.#turn(message, options, false);
        for (;;) {
            const r = await it.next();
            if (r.done) return r.value;
        }
    }

    /**
     * Sends a message and streams the reply as deltas (text, reasoning, tool calls). The
     * iterator's return value is the whole response, as send() gives it.
     */
    stream(message: string | ChatMessage | ChatMessage[], options?: ChatSendOptions): AsyncGenerator<ChatDelta, ChatResponse> {
        return this.#turn(message, options, true);
    }

    // A turn; `streaming`: parse the reply as it grows (send() parses it once, at the end).
    async *#turn(message: string | ChatMessage | ChatMessage[], options: ChatSendOptions | undefined, streaming: boolean): AsyncGenerator<ChatDelta, ChatResponse> {
        const added = toMessages(message);
        const o = optionsObject("options", options);
        checkKnownKeys("chat send", o, [...SEND_KEYS, ...SAMPLING_KEYS]);
        const maxTokens = optInt(o, "maxTokens", 512, 1, 2 ** 31 - 1);
        const signal = optSignal(o);
        const tools = o.tools !== undefined ? normalizeTools(o.tools) : this.#tools;
        const choice = resolveToolChoice(o.toolChoice, tools);
        const useTools = tools?.length && choice.mode !== "none" ? tools.filter((t) => !choice.forced || t.function.name === choice.forced) : undefined;
        if (useTools && (o.grammar !== undefined || o.jsonSchema !== undefined)) {
            throw new LlamaError("ERR_INVALID_OPTION", "a grammar or jsonSchema cannot be combined with tool calls (toolChoice \"none\" turns them off)");
        }
        const userStops = o.stop === undefined ? [] : is.string(o.stop) ? [o.stop] : o.stop;
        if (!Array.isArray(userStops) || !userStops.every((s) => is.string(s) && s.length > 0)) throw invalidOption("stop", "a non-empty string or an array of them", o.stop);
        const sampling: Record<string, unknown> = {};
        for (const k of SAMPLING_KEYS) if (o[k] !== undefined) sampling[k] = o[k];
        if (signal?.aborted) throw abortedError("chat", signal.reason);
        this.#checkIdle();
        this.#busy = true;
        const before = this.#messages.length;
        let steps: AsyncGenerator<unknown> | null = null;
        let completed = false;
        try {
            this.#messages.push(...added);
            const req: Omit<RenderRequest, "messages"> = {
                tools: useTools,
                toolChoice: useTools ? choice.mode : "auto",
                enableThinking: this.#enableThinking,
                addGenerationPrompt: true,
                // A JSON schema goes through the template too: some formats wrap it.
                jsonSchema: o.jsonSchema,
            };
            const { rendered, tokens, dropped } = await this.#fit(req, maxTokens);
            // The template's grammar covers a JSON schema when it makes one; otherwise the schema stays.
            if (rendered.grammar) delete sampling.jsonSchema;
            const constraints = await replyConstraints(this.#model, rendered, { required: choice.mode === "required" });
            const generation = this.context.generate(tokens, {
                ...sampling,
                ...constraints,
                sequence: this.sequence,
                maxTokens,
                stop: [...rendered.additionalStops, ...(userStops as string[])],
                signal,
            });
            steps = generation;
            const templates = this.#templates;
            const parser = new ReplyParser(this.#model, (raw, partial) => templates.parse(raw, rendered, { partial }), !useTools && !rendered.supportsThinking && rendered.parser === "");
            let summary: GenerateSummary;
            let lastToken = -1;
            for (;;) {
                const r = await generation.next();
                if (r.done) {
                    summary = r.value;
                    break;
                }
                lastToken = r.value.token;
                for (const d of await parser.push(r.value, streaming)) yield chatDelta(d, lastToken);
            }
            const { parsed, deltas } = await parser.finish(choice.mode === "required");
            if (streaming) for (const d of deltas) yield chatDelta(d, lastToken);
            const toolCalls = parsed.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments }));
            const reply: ChatMessage = { role: "assistant", content: parsed.content };
            if (toolCalls.length) reply.tool_calls = toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
            if (this.#keepReasoning && parsed.reasoning) reply.reasoning_content = parsed.reasoning;
            this.#messages.push(reply);
            completed = true;
            return {
                text: parsed.content,
                reasoning: parsed.reasoning,
                toolCalls,
                stopReason: toolCalls.length ? "toolCalls" : summary.reason,
                stats: {
                    promptTokens: summary.promptTokens,
                    reusedTokens: summary.reusedTokens,
                    evaluatedTokens: summary.evaluatedTokens,
                    generatedTokens: summary.tokens,
                    droppedMessages: dropped,
                },
                message: structuredClone(reply),
            };
        } finally {
            // A failed or abandoned turn (an error, or a consumer that stopped reading the
            // stream) leaves no half message behind, and its generation ends with it.
            if (!completed) {
                this.#messages.length = before;
                await steps?.return(undefined);
            }
            this.#busy = false;
        }
    }

    /**
     * Sends `message`, then answers every tool call by calling `functions[name](args)` and
     * sending the results back, until the model replies without calls.
     */
    async run(message: string | ChatMessage, options: ChatRunOptions): Promise<ChatResponse> {
        const o = optionsObject("options", options);
        if (!is.object(o.functions)) throw invalidOption("functions", "an object of functions by tool name", o.functions);
        const functions = o.functions as Record<string, (args: unknown) => unknown>;
        const maxRounds = optInt(o, "maxRounds", 8, 1, 1000);
        const { functions: _f, maxRounds: _m, ...send } = o as unknown as ChatRunOptions;
        let next: string | ChatMessage | ChatMessage[] = message;
        for (let round = 0; round < maxRounds; round++) {
            const r = await this.send(next, send);
            if (r.toolCalls.length === 0) return r;
            const results: ChatMessage[] = [];
            for (const call of r.toolCalls) {
                const fn = functions[call.name];
                let content: string;
                if (typeof fn !== "function") content = JSON.stringify({ error: `no function named ${call.name}` });
                else {
                    let args: unknown;
                    try {
                        args = JSON.parse(call.arguments || "{}");
                    } catch {
                        args = call.arguments;
                    }
                    const out = await fn(args);
                    content = is.string(out) ? out : JSON.stringify(out ?? null);
                }
                results.push({ role: "tool", tool_call_id: call.id, name: call.name, content });
            }
            next = results;
        }
        throw new LlamaError("ERR_ABORTED", `the model was still calling tools after ${maxRounds} rounds`);
    }

    /** Frees the session's own context (a shared one stays). Idempotent. */
    async dispose(): Promise<void> {
        if (this.#disposed) return;
        this.#disposed = true;
        if (this.#ownsContext) await this.context.dispose();
    }

    [Symbol.asyncDispose](): Promise<void> {
        return this.dispose();
    }

    #checkIdle(): void {
        if (this.#disposed || this.context.disposed) throw disposedError("chat session");
        if (this.#busy) throw new LlamaError("ERR_BUSY", "the chat session is answering; wait for the reply (or abort it) first");
    }

    /**
     * Renders the conversation and drops the oldest whole turns while it does not fit with
     * room for the reply (a quarter of the context, or maxTokens if smaller). The system
     * prompt stays, and so does the newest turn: if that alone does not fit, ERR_CONTEXT_FULL.
     */
    async #fit(req: Omit<RenderRequest, "messages">, maxTokens: number): Promise<{ rendered: RenderedChat; tokens: Int32Array; dropped: number }> {
        const room = Math.min(maxTokens, Math.floor(this.context.contextSize * RESERVED_FOR_REPLY));
        let dropped = 0;
        for (;;) {
            const messages = this.#window();
            const rendered = await this.#templates.render({ ...req, messages });
            const tokens = await this.#templates.tokenize(rendered, true, this.#tokenCache);
            if (tokens.length + room <= this.context.contextSize) return { rendered, tokens, dropped };
            const next = this.#nextTurnStart();
            if (this.#contextShift === "error" || next < 0) {
                if (tokens.length < this.context.contextSize && next < 0) return { rendered, tokens, dropped };
                throw new LlamaError("ERR_CONTEXT_FULL", `the conversation takes ${tokens.length} tokens and the context holds ${this.context.contextSize}${this.#contextShift === "error" ? " (contextShift: \"error\")" : ", even with only the system prompt and the newest turn"}`);
            }
            dropped += next - this.#windowStart;
            this.#windowStart = next;
        }
    }

    /** The system messages, then the messages from the window's start on. */
    #window(): ChatMessage[] {
        const system = this.#messages.filter((m, i) => i < this.#firstNonSystem() && (m.role === "system" || m.role === "developer"));
        return [...system, ...this.#messages.slice(Math.max(this.#windowStart, this.#firstNonSystem()))];
    }

    #firstNonSystem(): number {
        const i = this.#messages.findIndex((m) => m.role !== "system" && m.role !== "developer");
        return i < 0 ? this.#messages.length : i;
    }

    /** Where the turn after the window's first one starts, or -1 when only the newest turn is left. */
    #nextTurnStart(): number {
        const from = Math.max(this.#windowStart, this.#firstNonSystem());
        for (let i = from + 1; i < this.#messages.length; i++) {
            if (this.#messages[i]!.role === "user") return i;
        }
        return -1;
    }
}

function toMessages(message: unknown): ChatMessage[] {
    if (is.string(message)) return [{ role: "user", content: message }];
    if (Array.isArray(message)) {
        if (message.length === 0) throw invalidOption("message", "a string, a message or a non-empty array of messages", message);
        return message.map((m, i) => normalizeMessage(m, `message[${i}]`));
    }
    return [normalizeMessage(message, "message")];
}

function chatDelta(d: ReplyDelta, token: number): ChatDelta {
    if ("reasoning" in d) return { type: "reasoning", text: d.reasoning, token };
    if ("content" in d) return { type: "text", text: d.content, token };
    return { type: "toolCall", ...d.toolCall };
}

