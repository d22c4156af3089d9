// POST /v1/completions: a raw prompt (text, or token ids) continued on the pool. Special
// tokens written as text in the prompt are parsed, as llama-server does: the caller owns the
// whole prompt here.
import type { FastifyInstance } from "fastify";
import type { Model } from "../model.js";
import { ApiError, badRequest } from "./errors.js";
import { CompletionLogprobsBuilder } from "./logprobs.js";
import { replyIds, respond, usageOf, type ReplyShape } from "./respond.js";
import { generationOptions, type SamplingFields } from "./sampling.js";
import { completionBody } from "./schemas.js";
import type { ServerState } from "./state.js";

interface CompletionBody extends SamplingFields {
    model?: string;
    prompt: string | (string | number | number[])[];
    stream?: boolean | null;
    stream_options?: { include_usage?: boolean } | null;
    logprobs?: number | null;
    echo?: boolean | null;
    suffix?: string | null;
}

// logprobs: N gives OpenAI's legacy shape (tokens, token_logprobs, top_logprobs as
// { text: logprob }, text_offset counted in the completion's text). Streaming, each chunk
// carries the tokens stepped since the previous one (a step held back by a possible stop
// string sends nothing; its entry rides with the next chunk).
function completionShape(modelId: string, logprobs: Model | null): ReplyShape {
    const { id, created } = replyIds("cmpl");
    const lp = logprobs ? new CompletionLogprobsBuilder(logprobs) : null;
    const chunk = (text: string, finish: string | null) => ({
        id, object: "text_completion", created, model: modelId,
        choices: [{ text, index: 0, logprobs: lp && (lp.pending > 0 || finish !== null) ? lp.take() : null, finish_reason: finish }],
    });
    let text = "";
    return {
        idPrefix: "cmpl",
        opening: () => [],
        step: async (s, streaming) => {
            lp?.push(s);
            if (!streaming) {
                text += s.text;
                return [];
            }
            return s.text === "" ? [] : [chunk(s.text, null)];
        },
        closing: async (r) => [chunk("", r.finishReason)],
        body: async (r) => ({ ...chunk(text, r.finishReason), usage: usageOf(r) }),
    };
}

/** The one prompt of a request: a string or token ids (batches of prompts are refused). */
function promptOf(p: CompletionBody["prompt"], vocabSize: number): string | number[] {
    if (typeof p === "string") return p;
    if (p.length === 0) throw badRequest("prompt", "must not be empty");
    if (p.every((x) => typeof x === "number")) {
        const bad = (p as number[]).findIndex((t) => t >= vocabSize);
        if (bad >= 0) throw badRequest(`prompt[${bad}]`, `token id ${p[bad] as number} is not in this model's vocabulary (0 to ${vocabSize - 1})`);
        return p as number[];
    }
    if (p.length > 1) throw badRequest("prompt", "only one prompt per request is supported", "unsupported_value");
    const only = p[0]!;
    if (typeof only === "string") return only;
    if (Array.isArray(only)) return promptOf(only, vocabSize);
    throw badRequest("prompt[0]", "must be a string or an array of token ids");
}

export function registerCompletions(app: FastifyInstance, state: ServerState): void {
    const route = "/v1/completions";
    app.post<{ Body: CompletionBody }>(route, { schema: { body: completionBody }, ...state.arrivals.hooks() }, async (request, reply) => {
        const body = request.body;
        const model = state.pool.model;
        if (body.echo) throw new ApiError(400, "echo is not supported by this server", { param: "echo", code: "unsupported_parameter" });
        if (body.suffix) throw new ApiError(400, "suffix is not supported by this server", { param: "suffix", code: "unsupported_parameter" });
        const prompt = promptOf(body.prompt, model.info.vocabSize);
        const options = generationOptions(body, model);
        options.parseSpecial = true;
        const logprobs = body.logprobs ?? null;
        if (logprobs !== null) options.logProbs = logprobs;
        return respond(state, reply, route, prompt, options, { on: body.stream === true, includeUsage: body.stream_options?.include_usage === true }, completionShape(state.modelId, logprobs !== null ? model : null));
    });
}
