// OpenAI request fields -> llamafuse generation options. The schema has already checked
// types and ranges; what needs the model (token ids, grammars) is checked here, and every
// failure names the field it came from.
import { LlamaError } from "../errors.js";
import { jsonSchemaToGrammar } from "../json-schema.js";
import type { Model } from "../model.js";
import type { PoolGenerateOptions } from "../pool.js";
import { RANDOM_SEED } from "../sampling.js";
import { badRequest } from "./errors.js";

export interface SamplingFields {
    max_tokens?: number | null;
    max_completion_tokens?: number | null;
    temperature?: number | null;
    top_p?: number | null;
    top_k?: number;
    min_p?: number;
    repeat_penalty?: number;
    seed?: number | null;
    stop?: string | string[] | null;
    n?: number | null;
    presence_penalty?: number | null;
    frequency_penalty?: number | null;
    logit_bias?: Record<string, number> | null;
}

export interface ResponseFormat {
    type: "text" | "json_object" | "json_schema";
    json_schema?: { name: string; schema?: Record<string, unknown> | boolean };
    schema?: Record<string, unknown> | boolean;
}

/** Tokens generated when a request names no limit (the slot's size still caps it). */
export const DEFAULT_MAX_TOKENS = 4096;

/** Same seed, same draws: OpenAI seeds are any integer; llama.cpp's are 0 to 2^32-2. */
function resolveSeed(seed: number): number {
    if (seed < 0) return RANDOM_SEED;
    return seed % RANDOM_SEED;
}

export function stopStrings(stop: string | string[] | null | undefined): string[] {
    if (stop === undefined || stop === null) return [];
    const list = typeof stop === "string" ? [stop] : stop;
    if (list.some((s) => s.length === 0)) throw badRequest("stop", "stop strings must not be empty");
    return list;
}

/** The JSON schema a response_format asks for (json_object: any object), or undefined for text. */
export function schemaOf(format: ResponseFormat | undefined): Record<string, unknown> | boolean | undefined {
    if (!format || format.type === "text") return undefined;
    if (format.type === "json_schema") {
        if (!format.json_schema) throw badRequest("response_format.json_schema", "required when type is \"json_schema\"");
        return format.json_schema.schema ?? true;
    }
    return format.schema ?? { type: "object" };
}

/** The GBNF grammar of a response_format's schema; a schema that cannot become one is a 400 naming it. */
export function grammarFor(format: ResponseFormat | undefined): string | undefined {
    const schema = schemaOf(format);
    if (schema === undefined) return undefined;
    try {
        return jsonSchemaToGrammar(schema);
    } catch (err) {
        const where = format!.type === "json_schema" ? "response_format.json_schema.schema" : "response_format.schema";
        throw badRequest(where, err instanceof LlamaError ? err.message : "this JSON schema cannot be turned into a grammar");
    }
}

export function generationOptions(body: SamplingFields, model: Model, extraStops: string[] = []): PoolGenerateOptions {
    if (body.n !== undefined && body.n !== null && body.n !== 1) throw badRequest("n", "only n = 1 is supported", "unsupported_value");
    const o: PoolGenerateOptions = {};
    const max = body.max_completion_tokens ?? body.max_tokens;
    o.maxTokens = max ?? DEFAULT_MAX_TOKENS;
    if (body.temperature !== undefined && body.temperature !== null) o.temperature = body.temperature;
    if (body.top_p !== undefined && body.top_p !== null) o.topP = body.top_p;
    if (body.top_k !== undefined) o.topK = body.top_k;
    if (body.min_p !== undefined) o.minP = body.min_p;
    if (body.repeat_penalty !== undefined) o.repeatPenalty = body.repeat_penalty;
    if (body.seed !== undefined && body.seed !== null) o.seed = resolveSeed(body.seed);
    if (body.presence_penalty) o.presencePenalty = body.presence_penalty;
    if (body.frequency_penalty) o.frequencyPenalty = body.frequency_penalty;
    if (body.logit_bias) {
        const bias: Record<number, number> = {};
        for (const [k, v] of Object.entries(body.logit_bias)) {
            const t = Number(k);
            if (t >= model.info.vocabSize) throw badRequest(`logit_bias.${k}`, `token id ${k} is not in this model's vocabulary (0 to ${model.info.vocabSize - 1})`);
            // OpenAI: -100 bans a token, 100 forces it.
            bias[t] = v <= -100 ? -Infinity : v;
        }
        o.logitBias = bias;
    }
    const stops = [...stopStrings(body.stop), ...extraStops];
    if (stops.length > 0) o.stop = [...new Set(stops)];
    return o;
}
