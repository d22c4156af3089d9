// The OpenAI-compatible HTTP server: a thin fastify layer over a slot pool. Each route's
// body has a JSON Schema (checked before the handler; no type coercion, unknown fields
// refused), bodies have a size limit, an onRequest hook checks the API key, and every error
// leaves as an OpenAI-shaped body with the status its client library expects.
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import type { Pool } from "../pool.js";
import { optInt } from "../validate.js";
import { ArrivalGate, IDLE_GATHER_MS } from "./arrivals.js";
import { registerChat } from "./chat.js";
import { registerCompletions } from "./completions.js";
import { ApiError, errorBody, toApiError } from "./errors.js";
import { Metrics } from "./metrics.js";
import type { ServerState } from "./state.js";

export interface ServerOptions {
    pool: Pool;
    /** The name /v1/models lists. @default the model file's name */
    modelId?: string;
    /** Required as "Authorization: Bearer <key>" on every route but /health. */
    apiKey?: string;
    /** Chat template instead of the model's: Jinja source or a llama.cpp built-in name ("chatml", ...). */
    chatTemplate?: string;
    /** Largest request body in bytes. @default 2 MiB */
    bodyLimit?: number;
    /**
     * How long a generation request that finds the pool idle waits for others arriving with
     * it, so that a burst's prompts share one step (src/server/arrivals.ts): at most this, and
     * at most a quarter of the pool's mean step (no wait where steps take under 4 ms); 0: never.
     * @default 5
     */
    batchWindowMs?: number;
    /** Routes added by other features (embeddings), given the app and the shared state. */
    extraRoutes?: ((app: FastifyInstance, state: ServerState) => void)[];
}

const PUBLIC_ROUTES = new Set(["/health", "/v1/health"]);

function digest(s: string): Buffer {
    return createHash("sha256").update(s).digest();
}

/** The fastify app, routes registered, not yet listening. */
export async function createServer(o: ServerOptions): Promise<FastifyInstance> {
    const batchWindowMs = optInt(o as unknown as Record<string, unknown>, "batchWindowMs", IDLE_GATHER_MS, 0, 1000);
    const app = Fastify({
        logger: false,
        bodyLimit: o.bodyLimit ?? 2 * 1024 * 1024,
        // A fastify default would coerce "5" into 5 and silently drop unknown fields: here a
        // wrong type or an unknown field is an error that names it.
        ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, allowUnionTypes: true, strict: false } },
        onProtoPoisoning: "error",
        onConstructorPoisoning: "error",
        return503OnClosing: true,
    });
    const info = o.pool.model.info;
    const state: ServerState = {
        pool: o.pool,
        modelId: o.modelId ?? (o.pool.model.path.split(/[\\/]/).pop() || "model"),
        metrics: new Metrics(),
        arrivals: new ArrivalGate(),
        batchWindowMs,
        created: Math.floor(Date.now() / 1000),
        ...(o.chatTemplate !== undefined ? { chatTemplate: o.chatTemplate } : {}),
    };

    if (o.apiKey !== undefined) {
        const want = digest(o.apiKey);
        app.addHook("onRequest", async (request) => {
            if (PUBLIC_ROUTES.has(request.url.split("?")[0]!)) return;
            const header = request.headers.authorization ?? "";
            const given = header.startsWith("Bearer ") ? header.slice(7) : "";
            // Compare digests in constant time: the key's length and prefix do not leak.
            if (!timingSafeEqual(digest(given), want)) throw new ApiError(401, "Invalid API key", { code: "invalid_api_key" });
        });
    }
    app.addHook("onResponse", async (request, reply) => {
        state.metrics.request(request.routeOptions.url ?? "unmatched", reply.statusCode);
    });
    app.setErrorHandler(async (err, _request, reply) => {
        const e = toApiError(err);
        if (e.status === 429) void reply.header("retry-after", "1");
        return reply.status(e.status).send(errorBody(e));
    });
    app.setNotFoundHandler(async (request, reply) => {
        return reply.status(404).send(errorBody(new ApiError(404, `no route ${request.method} ${request.url.split("?")[0]}`, { code: "not_found" })));
    });

    const health = async (_request: unknown, reply: { status(n: number): unknown }) => {
        if (o.pool.disposed) {
            reply.status(503);
            return { status: "unavailable" };
        }
        const s = o.pool.stats();
        return { status: "ok", slots_idle: s.slots.filter((x) => !x.busy).length, slots_processing: s.slots.filter((x) => x.busy).length, queued: s.queued };
    };
    app.get("/health", health);
    app.get("/v1/health", health);
    app.get("/v1/models", async () => ({
        object: "list",
        data: [{
            id: state.modelId, object: "model", created: state.created, owned_by: "llamafuse",
            meta: { architecture: info.architecture, parameters: info.parameters, size_bytes: info.sizeBytes, vocab_size: info.vocabSize, context_per_slot: o.pool.contextSize, slots: o.pool.slots, train_context: info.trainContextSize },
        }],
    }));
    app.get("/metrics", async (_request, reply) => {
        void reply.header("content-type", "text/plain; version=0.0.4; charset=utf-8");
        return state.metrics.render(o.pool);
    });
    registerChat(app, state);
    registerCompletions(app, state);
    for (const add of o.extraRoutes ?? []) add(app, state);
    await app.ready();
    return app;
}
