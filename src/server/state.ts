// What every route reads: the pool it generates on, the model's public name, metrics.
import type { Pool } from "../pool.js";
import type { ArrivalGate } from "./arrivals.js";
import type { Metrics } from "./metrics.js";

export interface ServerState {
    pool: Pool;
    /** The id /v1/models lists and responses name. */
    modelId: string;
    metrics: Metrics;
    /** Generation requests from arrival to start: a burst starts together (arrivals.ts). */
    arrivals: ArrivalGate;
    /** The longest an idle pool's first request waits for others (arrivals.ts). */
    batchWindowMs: number;
    created: number;
    /** Chat template that replaces the model's (Jinja source or a built-in name). */
    chatTemplate?: string;
}
