// The part of a generation route that is the same for chat and completions: start the
// generation on the pool, feed each step to the route's reply shape, then answer with one
// JSON body or stream the shape's chunks as server-sent events.
import { randomUUID } from "node:crypto";
import type { FastifyReply } from "fastify";
import type { GenerateStep } from "../generate.js";
import { LlamaError } from "../errors.js";
import type { PoolGenerateOptions } from "../pool.js";
import { idleWindowMs } from "./arrivals.js";
import { errorBody, toApiError } from "./errors.js";
import { Generation, type GenerationResult } from "./generation.js";
import { SseStream, disconnectSignal } from "./sse.js";
import type { ServerState } from "./state.js";

/** How one route's reply looks. A new one is made per request (it may keep state). */
export interface ReplyShape {
    /** "chatcmpl" or "cmpl". */
    idPrefix: string;
    /** Chunks sent before any text (chat's role delta). */
    opening(): unknown[];
    /** A generated step: the chunks it releases (streaming gets them; stream: false ignores them). */
    step(step: GenerateStep, streaming: boolean): Promise<unknown[]>;
    /** Streaming: the chunks after the last step, the last one with the finish reason. */
    closing(r: GenerationResult): Promise<unknown[]>;
    /** Not streaming: the whole answer. */
    body(r: GenerationResult): Promise<unknown>;
}

export interface ReplyIds {
    id: string;
    created: number;
}

export function replyIds(prefix: string): ReplyIds {
    return { id: `${prefix}-${randomUUID().replace(/-/g, "")}`, created: Math.floor(Date.now() / 1000) };
}

export function usageOf(r: GenerationResult) {
    return {
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        total_tokens: r.promptTokens + r.completionTokens,
        prompt_tokens_details: { cached_tokens: r.cachedTokens },
    };
}

export async function respond(
    state: ServerState,
    reply: FastifyReply,
    route: string,
    prompt: string | ArrayLike<number>,
    options: PoolGenerateOptions,
    stream: { on: boolean; includeUsage: boolean },
    shape: ReplyShape,
): Promise<unknown> {
    const gone = disconnectSignal(reply.raw);
    try {
        // requests that arrived with this one start in the same step (arrivals.ts)
        await state.arrivals.ready(reply.request, state.pool.busy ? 0 : idleWindowMs(state.batchWindowMs, state.pool.context.schedulerStats()));
        if (!stream.on) {
            try {
                const gen = await Generation.start(state.pool, prompt, { ...options, signal: gone.signal }, state.metrics);
                const it = gen.steps();
                let r = await it.next();
                while (!r.done) {
                    await shape.step(r.value, false);
                    r = await it.next();
                }
                return await shape.body(r.value);
            } catch (err) {
                if (gone.signal.aborted) state.metrics.disconnected();
                throw err;
            }
        }
        let gen: Generation;
        try {
            gen = await Generation.start(state.pool, prompt, { ...options, signal: gone.signal }, state.metrics);
        } catch (err) {
            if (gone.signal.aborted) state.metrics.disconnected();
            throw err;
        }
        // From here the reply is ours: fastify neither serializes nor ends it.
        reply.hijack();
        const sse = new SseStream(reply.raw);
        sse.open();
        let status = 200;
        const it = gen.steps();
        try {
            let alive = true;
            for (const c of shape.opening()) alive &&= await sse.send(c);
            let r = await it.next();
            while (!r.done && alive) {
                // A client that reads slowly holds these awaits; its own generation waits with it.
                for (const c of await shape.step(r.value, true)) alive &&= await sse.send(c);
                if (alive) r = await it.next();
            }
            if (!r.done) {
                // The client left while we wrote: stop generating.
                state.metrics.disconnected();
                status = 499;
                return undefined;
            }
            const closing = await shape.closing(r.value);
            for (const c of closing) await sse.send(stream.includeUsage ? { ...(c as object), usage: null } : c);
            const last = closing[closing.length - 1] as Record<string, unknown> | undefined;
            if (stream.includeUsage && last) await sse.send({ ...last, choices: [], usage: usageOf(r.value) });
            await sse.end();
        } catch (err) {
            if (gone.signal.aborted || (err instanceof LlamaError && err.code === "ERR_ABORTED")) {
                state.metrics.disconnected();
                status = 499;
            } else {
                // Headers are gone: the error travels as an event, as the OpenAI API does.
                const e = toApiError(err);
                status = e.status;
                await sse.send(errorBody(e));
            }
        } finally {
            await it.return(undefined as never).catch(() => {});
            sse.close();
            state.metrics.request(route, status);
        }
        return undefined;
    } finally {
        gone.dispose();
    }
}
