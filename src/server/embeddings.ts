// POST /v1/embeddings: vectors from an embedding context (model.createEmbeddingContext), one
// per input, as floats or base64 little-endian float32 (what the openai client asks for by
// default). Only registered when the server was given an embedding context.
import type { FastifyInstance } from "fastify";
import { badRequest } from "./errors.js";
import { embeddingBody } from "./schemas.js";
import type { ServerState } from "./state.js";

/** What the route needs of an EmbeddingContext. */
export interface Embedder {
    readonly dimensions: number;
    readonly contextSize: number;
    embed(texts: readonly (string | ArrayLike<number>)[], options?: { signal?: AbortSignal }): Promise<Float32Array[]>;
}

interface EmbeddingBody {
    model?: string;
    input: string | (string | number | number[])[];
    encoding_format?: "float" | "base64";
    dimensions?: number;
}

function inputsOf(input: EmbeddingBody["input"], vocabSize: number): (string | number[])[] {
    if (typeof input === "string") return [input];
    if (input.length === 0) throw badRequest("input", "must not be empty");
    if (input.every((x) => typeof x === "number")) input = [input as number[]];
    return input.map((x, i) => {
        if (typeof x === "string") return x;
        if (!Array.isArray(x)) throw badRequest(`input[${i}]`, "must be a string or an array of token ids");
        if (x.length === 0) throw badRequest(`input[${i}]`, "must not be empty");
        const bad = x.findIndex((t) => t >= vocabSize);
        if (bad >= 0) throw badRequest(`input[${i}][${bad}]`, `token id ${x[bad]} is not in this model's vocabulary`);
        return x;
    });
}

export function embeddingsRoute(embedder: Embedder): (app: FastifyInstance, state: ServerState) => void {
    return (app, state) => {
        app.post<{ Body: EmbeddingBody }>("/v1/embeddings", { schema: { body: embeddingBody } }, async (request) => {
            const body = request.body;
            const model = state.pool.model;
            if (body.dimensions !== undefined && body.dimensions !== embedder.dimensions) {
                throw badRequest("dimensions", `this model's embeddings have ${embedder.dimensions} dimensions`, "unsupported_value");
            }
            const inputs = inputsOf(body.input, model.info.vocabSize);
            const counts = await Promise.all(inputs.map(async (x) => (typeof x === "string" ? (await model.tokenize(x)).length : x.length)));
            const tooLong = counts.findIndex((n) => n > embedder.contextSize);
            if (tooLong >= 0) throw badRequest(typeof body.input === "string" ? "input" : `input[${tooLong}]`, `${counts[tooLong]} tokens; the embedding context holds ${embedder.contextSize}`, "context_length_exceeded");
            const vectors = await embedder.embed(inputs);
            const total = counts.reduce((a, b) => a + b, 0);
            return {
                object: "list",
                data: vectors.map((v, index) => ({
                    object: "embedding",
                    index,
                    embedding: body.encoding_format === "base64" ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") : Array.from(v),
                })),
                model: state.modelId,
                usage: { prompt_tokens: total, total_tokens: total },
            };
        });
    };
}
