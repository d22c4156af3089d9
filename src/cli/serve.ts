// `llamafuse serve <model>`: the OpenAI-compatible HTTP server on a slot pool. The first
// line on stdout is `listening on http://HOST:PORT` (scripts and tests read the port from
// it when --port 0 picks one); everything else goes to stderr.
import { existsSync, readFileSync } from "node:fs";
import { InvalidArgumentError, type Command } from "commander";
import type { Model } from "../model.js";
import { embeddingsRoute, type Embedder } from "../server/embeddings.js";
import { createServer } from "../server/index.js";
import { action, note, openModel } from "./common.js";
import { addModelFlags, contextOptionsFrom, loadOptionsFrom, parseInteger, parsePositive, type ModelFlags } from "./options.js";

interface ServeFlags extends ModelFlags {
    host: string;
    port: number;
    slots: number;
    apiKey?: string;
    queueLimit?: number;
    alias?: string;
    bodyLimit?: number;
    batchWindow?: number;
    embeddings?: boolean;
    chatTemplate?: string;
}

/** An embedding context for /v1/embeddings, where this build has them. */
async function embedderFor(model: Model, threads: number | undefined): Promise<Embedder> {
    const create = (model as unknown as { createEmbeddingContext?: (o: unknown) => Promise<Embedder> }).createEmbeddingContext;
    if (typeof create !== "function") throw new InvalidArgumentError("--embeddings: this build has no embedding contexts");
    return create.call(model, threads === undefined ? {} : { threads });
}

function parsePort(value: string): number {
    const n = parseInteger(value);
    if (n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port between 0 and 65535, got "${value}"`);
    return n;
}

export function registerServe(program: Command): void {
    // --context-size is per slot here: each slot holds that many tokens.
    addModelFlags(program.command("serve").description("serve a model over an OpenAI-compatible HTTP API (chat/completions, completions, models, metrics); --context-size is per slot"))
        .argument("<model>", "GGUF model file")
        .option("--host <host>", "address to listen on", "127.0.0.1")
        .option("--port <port>", "port (0: any free port)", parsePort, 8080)
        .option("--slots <n>", "requests generated at once (sequences of one context)", parsePositive, 4)
        .option("--api-key <key>", "require 'Authorization: Bearer <key>' (default: $LLAMAFUSE_API_KEY, else none)")
        .option("--queue-limit <n>", "requests that may wait for a slot before the server answers 429 (default: 64)", parseInteger)
        .option("--alias <name>", "model name that /v1/models lists (default: the file name)")
        .option("--body-limit <bytes>", "largest request body (default: 2 MiB)", parsePositive)
        .option("--batch-window <ms>", "how long (ms) a request that finds the server idle waits for others arriving with it, to start their prompts in one step; at most a quarter of a step (0: never; default: 5)", parseInteger)
        .option("--embeddings", "also serve POST /v1/embeddings (an embedding context beside the pool)")
        .option("--chat-template <name|file>", "chat template instead of the model's: a llama.cpp built-in name (chatml, llama3, ...) or a Jinja file")
        .action(action(async (modelPath: string, flags: ServeFlags) => {
            const apiKey = flags.apiKey ?? process.env.LLAMAFUSE_API_KEY;
            if (apiKey !== undefined && apiKey.length === 0) throw new InvalidArgumentError("--api-key must not be empty");
            const model = await openModel(modelPath, loadOptionsFrom(flags));
            const ctxOptions = contextOptionsFrom(flags);
            const pool = await model.createPool({ ...ctxOptions, slots: flags.slots, ...(flags.queueLimit !== undefined ? { queueLimit: flags.queueLimit } : {}) });
            const embedder = flags.embeddings ? await embedderFor(model, flags.threads) : null;
            const chatTemplate = flags.chatTemplate === undefined ? undefined : existsSync(flags.chatTemplate) ? readFileSync(flags.chatTemplate, "utf8") : flags.chatTemplate;
            const app = await createServer({ pool, apiKey, modelId: flags.alias, bodyLimit: flags.bodyLimit, ...(flags.batchWindow !== undefined ? { batchWindowMs: flags.batchWindow } : {}), chatTemplate, extraRoutes: embedder ? [embeddingsRoute(embedder)] : [] });
            await app.listen({ host: flags.host, port: flags.port });
            const addr = app.server.address();
            const port = typeof addr === "object" && addr ? addr.port : flags.port;
            const host = flags.host.includes(":") ? `[${flags.host}]` : flags.host;
            process.stdout.write(`listening on http://${host}:${port}\n`);
            note(`${pool.slots} slots of ${pool.contextSize} tokens, ${pool.context.threads} threads${apiKey ? ", API key required" : ""}`);

            let closing = false;
            const shutdown = (signal: string) => {
                if (closing) return;
                closing = true;
                note(`${signal}: closing`);
                // Stop accepting, end running generations with the pool, then free the model.
                void (async () => {
                    await Promise.allSettled([app.close(), pool.dispose()]);
                    await model.dispose();
                    process.exit(0);
                })();
            };
            process.once("SIGINT", () => shutdown("SIGINT"));
            process.once("SIGTERM", () => shutdown("SIGTERM"));
        }));
}
