// POST /v1/chat/completions: OpenAI chat messages rendered with the model's template,
// generated on the pool, the reply parsed into content, reasoning and tool calls by the
// template format's own parser; answered as one chat.completion or streamed as chunks.
import type { FastifyInstance } from "fastify";
import { ReplyParser, type ReplyDelta } from "../chat/reply.js";
import type { Model } from "../model.js";
import { badRequest } from "./errors.js";
import { chatPrompt, type ChatMessageIn, type ChatPrompt, type ParsedReply, type ToolChoiceIn, type ToolIn } from "./chat-prompt.js";
import type { GenerationResult } from "./generation.js";
import { chatLogprob, type ChatTokenLogprob } from "./logprobs.js";
import { replyIds, respond, usageOf, type ReplyShape } from "./respond.js";
import { generationOptions, grammarFor, schemaOf, type ResponseFormat, type SamplingFields } from "./sampling.js";
import { chatCompletionBody } from "./schemas.js";
import type { ServerState } from "./state.js";

interface ChatBody extends SamplingFields {
    model?: string;
    messages: ChatMessageIn[];
    stream?: boolean | null;
    stream_options?: { include_usage?: boolean } | null;
    logprobs?: boolean | null;
    top_logprobs?: number | null;
    response_format?: ResponseFormat;
    tools?: ToolIn[];
    tool_choice?: ToolChoiceIn;
    parallel_tool_calls?: boolean | null;
}

/** The reply as OpenAI's delta objects (the chat layer's ReplyParser does the parsing). @internal exported for tests */
export class ChatReply {
    readonly #parser: ReplyParser;

    constructor(model: Model, prompt: ChatPrompt) {
        this.#parser = new ReplyParser(model, prompt.parse, prompt.plain);
    }

    /** Deltas (OpenAI's delta objects) that this step releases. */
    async push(step: { token: number; text: string }, streaming: boolean): Promise<Record<string, unknown>[]> {
        return (await this.#parser.push(step, streaming)).map(openaiDelta);
    }

    /** The final parse; a reply that does not parse is plain content. */
    async finish(): Promise<{ parsed: ParsedReply; deltas: Record<string, unknown>[] }> {
        const { parsed, deltas } = await this.#parser.finish();
        return { parsed, deltas: deltas.map(openaiDelta) };
    }
}

function openaiDelta(d: ReplyDelta): Record<string, unknown> {
    if ("reasoning" in d) return { reasoning_content: d.reasoning };
    if ("content" in d) return { content: d.content };
    const c = d.toolCall;
    if (c.name === undefined) return { tool_calls: [{ index: c.index, function: { arguments: c.arguments } }] };
    return { tool_calls: [{ index: c.index, id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }] };
}

// logprobs: each generated token's entry. Streaming, a chunk carries the entries of the
// tokens stepped since the previous chunk (the parser may hold text back for a while, so a
// chunk can carry several, and the closing chunk what is left).
function chatShape(modelId: string, reply: ChatReply, logprobs: Model | null): ReplyShape {
    const { id, created } = replyIds("chatcmpl");
    const all: ChatTokenLogprob[] = [];
    let sent = 0;
    const chunk = (delta: Record<string, unknown>, finish: string | null) => {
        let lp: { content: ChatTokenLogprob[]; refusal: null } | null = null;
        if (logprobs && (sent < all.length || finish !== null)) {
            lp = { content: all.slice(sent), refusal: null };
            sent = all.length;
        }
        return { id, object: "chat.completion.chunk", created, model: modelId, choices: [{ index: 0, delta, logprobs: lp, finish_reason: finish }] };
    };
    // A reply cut by max_tokens says "length" even when it holds the start of a call.
    const finishOf = (p: ParsedReply, r: GenerationResult) => (r.finishReason !== "length" && p.toolCalls.length > 0 ? "tool_calls" : r.finishReason);
    return {
        idPrefix: "chatcmpl",
        opening: () => [chunk({ role: "assistant", content: "" }, null)],
        step: async (s, streaming) => {
            if (logprobs) all.push(chatLogprob(logprobs, s));
            return (await reply.push(s, streaming)).map((d) => chunk(d, null));
        },
        closing: async (r) => {
            const { parsed, deltas } = await reply.finish();
            return [...deltas.map((d) => chunk(d, null)), chunk({}, finishOf(parsed, r))];
        },
        body: async (r) => {
            const { parsed } = await reply.finish();
            const message: Record<string, unknown> = { role: "assistant", content: parsed.toolCalls.length > 0 && parsed.content === "" ? null : parsed.content, refusal: null };
            if (parsed.reasoning) message.reasoning_content = parsed.reasoning;
            if (parsed.toolCalls.length > 0) message.tool_calls = parsed.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
            return {
                id, object: "chat.completion", created, model: modelId,
                choices: [{ index: 0, message, logprobs: logprobs ? { content: all, refusal: null } : null, finish_reason: finishOf(parsed, r) }],
                usage: usageOf(r),
            };
        },
    };
}

export function registerChat(app: FastifyInstance, state: ServerState): void {
    const route = "/v1/chat/completions";
    app.post<{ Body: ChatBody }>(route, { schema: { body: chatCompletionBody }, ...state.arrivals.hooks() }, async (request, reply) => {
        const body = request.body;
        const model = state.pool.model;
        const topLogprobs = body.top_logprobs ?? null;
        if (topLogprobs !== null && body.logprobs !== true) throw badRequest("top_logprobs", "needs logprobs: true");
        // Checked here first, so that a schema that cannot become a grammar is a 400 naming it.
        const schemaGrammar = grammarFor(body.response_format);
        const jsonSchema = schemaOf(body.response_format);
        const options = generationOptions(body, model);
        if (body.logprobs === true) options.logProbs = topLogprobs ?? 0;
        const prompt = await chatPrompt(model, {
            messages: body.messages, tools: body.tools, toolChoice: body.tool_choice,
            parallelToolCalls: body.parallel_tool_calls ?? undefined, jsonSchema, template: state.chatTemplate,
        });
        // The template's grammar for tool calls (with the assistant opening it starts with, which
        // the prompt already holds, as its prefix), or the response_format schema's.
        const grammar = prompt.grammar ?? schemaGrammar;
        if (grammar !== undefined) options.grammar = grammar;
        if (prompt.grammarTriggers) options.grammarTriggers = prompt.grammarTriggers;
        if (prompt.grammarPrefix && grammar === prompt.grammar) options.grammarPrefix = prompt.grammarPrefix;
        options.stop = [...new Set([...(options.stop as string[] | undefined ?? []), ...prompt.stops])];
        if ((options.stop as string[]).length === 0) delete options.stop;
        return respond(state, reply, route, prompt.tokens, options, { on: body.stream === true, includeUsage: body.stream_options?.include_usage === true }, chatShape(state.modelId, new ChatReply(model, prompt), body.logprobs === true ? model : null));
    });
}
