// OpenAI's logprobs from generate()'s steps (options.logProbs): the model's own
// log-probabilities (float64 log-softmax of the logits, before the sampler chain; see
// GenerateOptions.logProbs), as OpenAI and llama-server (n_probs, its default
// post_sampling_probs: false) report them. Token text is the token's piece without special
// rendering, as llama-server shows it; `bytes` are its raw UTF-8 bytes (a piece may hold part
// of a character).
import type { GenerateStep } from "../generate.js";
import type { Model } from "../model.js";

/** One entry of chat's choices[].logprobs.content. */
export interface ChatTokenLogprob {
    token: string;
    logprob: number;
    bytes: number[];
    top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

const decoder = new TextDecoder("utf-8");

/** The pieces of a step's token and its alternatives, in one native call. */
function pieces(model: Model, step: GenerateStep): Uint8Array[] {
    return model.tokenPieces([step.token, ...(step.top ?? []).map((c) => c.token)], { special: false });
}

export function chatLogprob(model: Model, step: GenerateStep): ChatTokenLogprob {
    const p = pieces(model, step);
    const entry = (bytes: Uint8Array, logprob: number) => ({ token: decoder.decode(bytes), logprob, bytes: Array.from(bytes) });
    return { ...entry(p[0]!, step.logProb!), top_logprobs: (step.top ?? []).map((c, i) => entry(p[i + 1]!, c.logProb)) };
}

/** The legacy completions shape: parallel arrays, alternatives as { text: logprob }. */
export interface CompletionLogprobs {
    tokens: string[];
    token_logprobs: number[];
    top_logprobs: Record<string, number>[];
    text_offset: number[];
}

export class CompletionLogprobsBuilder {
    readonly #model: Model;
    #offset: number;
    #current: CompletionLogprobs = CompletionLogprobsBuilder.#empty();

    /** `offset`: where the completion's text starts (0: offsets within the completion). */
    constructor(model: Model, offset = 0) {
        this.#model = model;
        this.#offset = offset;
    }

    static #empty(): CompletionLogprobs {
        return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    }

    /** Adds a step; `text` is what the step released (its offset counts from there on). */
    push(step: GenerateStep): void {
        const p = pieces(this.#model, step).map((b) => decoder.decode(b));
        const c = this.#current;
        c.tokens.push(p[0]!);
        c.token_logprobs.push(step.logProb!);
        const top: Record<string, number> = {};
        // Two alternatives with the same text (different ids) keep the more likely one.
        (step.top ?? []).forEach((t, i) => (top[p[i + 1]!] ??= t.logProb));
        c.top_logprobs.push(top);
        c.text_offset.push(this.#offset);
        this.#offset += step.text.length;
    }

    /** What was pushed since the last take (all of it for a whole answer). */
    take(): CompletionLogprobs {
        const c = this.#current;
        this.#current = CompletionLogprobsBuilder.#empty();
        return c;
    }

    get pending(): number {
        return this.#current.tokens.length;
    }
}
