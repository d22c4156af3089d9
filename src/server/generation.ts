// One generation for one HTTP request, shared by the chat and completion routes: it runs on
// the pool, stops when the client disconnects, and records metrics. start() waits for the
// first token (or the end), so that errors found before any output (a full queue, a prompt
// too long, a bad grammar) still become a proper HTTP status instead of a broken stream.
import type { GenerateStep } from "../generate.js";
import type { Pool, PoolGenerateOptions, PoolSummary } from "../pool.js";
import type { Metrics } from "./metrics.js";

export interface GenerationResult {
    /** "stop" (end of generation or a stop string) or "length" (max_tokens or the slot's size). */
    finishReason: "stop" | "length";
    promptTokens: number;
    cachedTokens: number;
    completionTokens: number;
}

export class Generation {
    readonly #it: AsyncGenerator<GenerateStep, PoolSummary>;
    readonly #metrics: Metrics;
    readonly #t0: number;
    #first: IteratorResult<GenerateStep, PoolSummary> | null;

    private constructor(it: AsyncGenerator<GenerateStep, PoolSummary>, first: IteratorResult<GenerateStep, PoolSummary>, metrics: Metrics, t0: number) {
        this.#it = it;
        this.#first = first;
        this.#metrics = metrics;
        this.#t0 = t0;
    }

    static async start(pool: Pool, prompt: string | ArrayLike<number>, options: PoolGenerateOptions, metrics: Metrics): Promise<Generation> {
        const t0 = performance.now();
        const it = pool.generate(prompt, options);
        const first = await it.next();
        if (!first.done) metrics.firstToken((performance.now() - t0) / 1000);
        return new Generation(it, first, metrics, t0);
    }

    /** Each step, then the result. Throws what the pool throws (ERR_ABORTED on disconnect). */
    async *steps(): AsyncGenerator<GenerateStep, GenerationResult> {
        let r = this.#first!;
        this.#first = null;
        try {
            while (!r.done) {
                yield r.value;
                r = await this.#it.next();
            }
        } finally {
            if (!r.done) await this.#it.return(undefined as never).catch(() => {});
        }
        const s = r.value;
        this.#metrics.tokens(s.promptTokens, s.cachedTokens, s.tokens);
        this.#metrics.finished((performance.now() - this.#t0) / 1000);
        return { finishReason: s.reason === "maxTokens" ? "length" : "stop", promptTokens: s.promptTokens, cachedTokens: s.cachedTokens, completionTokens: s.tokens };
    }
}
