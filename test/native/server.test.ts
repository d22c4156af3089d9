// The OpenAI-compatible server, driven by the official `openai` client (streaming and not,
// JSON-schema response_format, sampling fields) with expected text computed through the
// API in this process (same rendered prompt, same greedy settings), and by raw requests
// that must get a 4xx naming the field, never a crash. Everything on loopback.
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, type Pool } from "../../src/index.js";
import { embeddingsRoute, type Embedder } from "../../src/server/embeddings.js";
import { ChatReply } from "../../src/server/chat.js";
import { chatPrompt, type ToolIn } from "../../src/server/chat-prompt.js";
import { createServer } from "../../src/server/index.js";
import { logSoftmax64, topK } from "../helpers/log-softmax.js";
import { MODELS, repoRoot } from "../helpers/models.js";

const THREADS = 1;
let model: Model;
let pool: Pool;
let app: FastifyInstance;
let base: string;
let client: OpenAI;

/** What the library generates greedily for `prompt` on a fresh context (the reference). */
async function referenceRun(prompt: string, maxTokens: number, o: { stop?: string[] } = {}): Promise<{ text: string; tokens: number; reason: string }> {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    try {
        const tokens = await model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
        let text = "";
        const it = ctx.generate(tokens, { temperature: 0, maxTokens, stop: o.stop });
        let r = await it.next();
        while (!r.done) {
            text += r.value.text;
            r = await it.next();
        }
        return { text, tokens: r.value.tokens, reason: r.value.reason };
    } finally {
        await ctx.dispose();
    }
}

async function reference(prompt: string, maxTokens: number, o: { stop?: string[] } = {}): Promise<string> {
    return (await referenceRun(prompt, maxTokens, o)).text;
}

interface ErrorJson {
    error?: { message: string; param: string | null; code: string | null; type: string };
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(base + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: ErrorJson | null = null;
    try {
        json = JSON.parse(text) as ErrorJson;
    } catch {
        // not JSON: the test says what it expected
    }
    return { status: res.status, json, text };
}

beforeAll(async () => {
    model = await loadModel(MODELS.stories260K);
    pool = await model.createPool({ slots: 4, contextSize: 256, threads: THREADS, queueLimit: 64 });
    app = await createServer({ pool, modelId: "stories" });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const addr = app.server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}`;
    client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
});
afterAll(async () => {
    await app?.close();
    await pool?.dispose();
    await model?.dispose();
});

const CHAT = [{ role: "user" as const, content: "Once upon a time" }];
// stories260K has no chat template: the server falls back to ChatML, as llama-server does.
const CHATML = "<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n";

describe("with the openai client", () => {
    it("lists the model", async () => {
        const list = await client.models.list();
        expect(list.data.map((m) => m.id)).toEqual(["stories"]);
    });

    it("chat: the text is the library's greedy text for the rendered prompt, with usage", async () => {
        const expected = await referenceRun(CHATML, 40, { stop: ["<|im_end|>"] });
        const r = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 40 });
        expect(r.object).toBe("chat.completion");
        expect(r.choices[0]!.message.role).toBe("assistant");
        expect(r.choices[0]!.message.content).toBe(expected.text);
        expect(expected.text.length).toBeGreaterThan(0);
        expect(r.choices[0]!.finish_reason).toBe(expected.reason === "maxTokens" ? "length" : "stop");
        const promptTokens = (await model.tokenize(CHATML, { addSpecial: true, parseSpecial: true })).length;
        expect(r.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: expected.tokens, total_tokens: promptTokens + expected.tokens });
    });

    it("chat streaming: deltas add up to the same text, then a finish reason and usage", async () => {
        const whole = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 30 });
        const stream = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 30, stream: true, stream_options: { include_usage: true } });
        let text = "";
        let finish: string | null = null;
        let usage: OpenAI.CompletionUsage | null | undefined;
        let chunks = 0;
        for await (const c of stream) {
            chunks++;
            expect(c.object).toBe("chat.completion.chunk");
            if (c.usage) usage = c.usage;
            const choice = c.choices[0];
            if (!choice) continue;
            text += choice.delta.content ?? "";
            finish = choice.finish_reason ?? finish;
        }
        expect(chunks).toBeGreaterThan(5);
        expect(text).toBe(whole.choices[0]!.message.content);
        expect(finish).toBe(whole.choices[0]!.finish_reason);
        expect(usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
        // The same prompt again came from a slot's cache.
        expect(usage?.prompt_tokens_details?.cached_tokens).toBe((usage?.prompt_tokens ?? 0) - 1);
    });

    it("completions, streaming and not, equal the library's text; stop strings end it", async () => {
        const prompt = "The little dog";
        const expected = await reference(prompt, 25);
        const r = await client.completions.create({ model: "stories", prompt, temperature: 0, max_tokens: 25 });
        expect(r.choices[0]!.text).toBe(expected);
        const stream = await client.completions.create({ model: "stories", prompt, temperature: 0, max_tokens: 25, stream: true });
        let text = "";
        for await (const c of stream) text += c.choices[0]?.text ?? "";
        expect(text).toBe(expected);

        // A stop string inside the expected text: the answer is the text before it.
        const words = expected.trim().split(/\s+/);
        const stop = ` ${words[Math.min(3, words.length - 1)]}`;
        const cut = expected.indexOf(stop);
        if (cut > 0) {
            const s = await client.completions.create({ model: "stories", prompt, temperature: 0, max_tokens: 25, stop: [stop] });
            expect(s.choices[0]!.text).toBe(expected.slice(0, cut));
            expect(s.choices[0]!.finish_reason).toBe("stop");
        }
        // Token ids as the prompt.
        const ids = Array.from(await model.tokenize(prompt));
        const t = await client.completions.create({ model: "stories", prompt: ids, temperature: 0, max_tokens: 25 });
        expect(t.choices[0]!.text).toBe(expected);
    });

    it("the same seed gives the same sampled text", async () => {
        const ask = () => client.completions.create({ model: "stories", prompt: "One day", temperature: 1, seed: 1234, max_tokens: 30 });
        const [a, b] = [await ask(), await ask()];
        expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    });

    it("response_format json_schema: the output parses and follows the schema", async () => {
        const schema = {
            type: "object",
            properties: { happy: { type: "boolean" }, mood: { type: "string", enum: ["sunny", "rainy"] } },
            required: ["happy", "mood"],
            additionalProperties: false,
        };
        const r = await client.chat.completions.create({
            model: "stories", messages: CHAT, temperature: 0, max_tokens: 60,
            response_format: { type: "json_schema", json_schema: { name: "story", schema, strict: true } },
        });
        const content = r.choices[0]!.message.content!;
        expect(r.choices[0]!.finish_reason).toBe("stop");
        const parsed = JSON.parse(content) as { happy: unknown; mood: unknown };
        expect(typeof parsed.happy).toBe("boolean");
        expect(["sunny", "rainy"]).toContain(parsed.mood);
        expect(Object.keys(parsed).sort()).toEqual(["happy", "mood"]);

        const obj = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 60, response_format: { type: "json_object" } });
        if (obj.choices[0]!.finish_reason === "stop") expect(typeof JSON.parse(obj.choices[0]!.message.content!)).toBe("object");
    });

});

describe("logprobs (the model's own log-probabilities, from the native loop)", () => {
    // The reference: greedy through ctx.forward on a fresh context (the prompt in chunks of the
    // pool's prefill size, then one token at a time) and a float64 log-softmax here. The pool
    // decodes several sequences per step in a larger cache, so logits may differ in the last
    // float bits: the bound is float32 noise, far below any real difference (a wrong row or a
    // post-sampling distribution is off by 1e-2 or more).
    const BOUND = 1e-4; // measured: up to 1.1e-5 (a prompt from a slot's cache), 7e-8 on a fresh slot
    async function greedyReference(prompt: string, n: number): Promise<{ token: number; lp: Float64Array }[]> {
        const ctx = await model.createContext({ contextSize: 256, threads: THREADS });
        try {
            const tokens = await model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
            let r = null as Awaited<ReturnType<typeof ctx.forward>> | null;
            for (let i = 0; i < tokens.length; i += 64) r = await ctx.forward({ sequence: 0, tokens: tokens.subarray(i, i + 64) });
            const out: { token: number; lp: Float64Array }[] = [];
            for (let i = 0; i < n; i++) {
                const lp = logSoftmax64(r!.logits(0));
                const token = topK(lp, 1)[0]!.token;
                if (model.isEndOfGeneration(token)) break;
                out.push({ token, lp });
                r = await ctx.forward({ sequence: 0, tokens: [token] });
            }
            return out;
        } finally {
            await ctx.dispose();
        }
    }
    const piece = (t: number) => new TextDecoder().decode(model.tokenPieces([t], { special: false })[0]);

    it("chat, streaming and not: each token's logprob and top_logprobs equal the reference; sorted; the tokens spell the content", async () => {
        const ref = await greedyReference(CHATML, 20);
        const r = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 20, logprobs: true, top_logprobs: 4 });
        const content = r.choices[0]!.logprobs!.content!;
        expect(content.length).toBe(r.usage!.completion_tokens);
        expect(content.length).toBe(ref.length);
        expect(content.map((c) => c.token).join("")).toBe(r.choices[0]!.message.content);
        const check = (c: OpenAI.ChatCompletionTokenLogprob, i: number) => {
            const { token, lp } = ref[i]!;
            expect(c.token, `token ${i}`).toBe(piece(token));
            expect(Buffer.from(c.bytes!).toString("utf8")).toBe(c.token);
            expect(Math.abs(c.logprob - lp[token]!)).toBeLessThan(BOUND);
            const want = topK(lp, 4);
            expect(c.top_logprobs.map((t) => t.token)).toEqual(want.map((w) => piece(w.token)));
            c.top_logprobs.forEach((t, k) => {
                expect(Math.abs(t.logprob - want[k]!.logProb)).toBeLessThan(BOUND);
                if (k > 0) expect(t.logprob).toBeLessThanOrEqual(c.top_logprobs[k - 1]!.logprob);
            });
            expect(c.top_logprobs[0]!.logprob).toBe(c.logprob); // greedy: the chosen token is the best
        };
        content.forEach(check);

        const stream = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 20, logprobs: true, top_logprobs: 4, stream: true });
        const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
        let text = "";
        for await (const c of stream) {
            text += c.choices[0]?.delta.content ?? "";
            streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
        }
        expect(text).toBe(r.choices[0]!.message.content);
        expect(streamed.length).toBe(content.length);
        streamed.forEach(check);

        // Without logprobs, none.
        const plain = await client.chat.completions.create({ model: "stories", messages: CHAT, temperature: 0, max_tokens: 5 });
        expect(plain.choices[0]!.logprobs).toBeNull();
    });

    it("completions: logprobs N gives the legacy shape (tokens, token_logprobs, top_logprobs, text_offset), streaming and not", async () => {
        const prompt = "The little dog";
        const ref = await greedyReference(prompt, 15);
        const r = await client.completions.create({ model: "stories", prompt, temperature: 0, max_tokens: 15, logprobs: 3 });
        const lp = r.choices[0]!.logprobs!;
        expect(lp.tokens!.length).toBe(ref.length);
        expect(lp.tokens!.join("")).toBe(r.choices[0]!.text);
        let offset = 0;
        lp.tokens!.forEach((t, i) => {
            const { token, lp: row } = ref[i]!;
            expect(t).toBe(piece(token));
            expect(lp.text_offset![i]).toBe(offset);
            offset += t.length;
            expect(Math.abs(lp.token_logprobs![i]! - row[token]!)).toBeLessThan(BOUND);
            const top = lp.top_logprobs![i]!;
            const want = topK(row, 3);
            for (const w of want) expect(Math.abs(top[piece(w.token)]! - w.logProb)).toBeLessThan(BOUND);
            expect(Math.max(...Object.values(top))).toBe(lp.token_logprobs![i]);
        });

        const stream = await client.completions.create({ model: "stories", prompt, temperature: 0, max_tokens: 15, logprobs: 3, stream: true });
        const tokens: string[] = [];
        const values: number[] = [];
        for await (const c of stream) {
            tokens.push(...(c.choices[0]?.logprobs?.tokens ?? []));
            values.push(...(c.choices[0]?.logprobs?.token_logprobs ?? []));
        }
        expect(tokens).toEqual(lp.tokens);
        values.forEach((v, i) => expect(Math.abs(v - lp.token_logprobs![i]!)).toBeLessThan(BOUND));
    });

    it("top_logprobs without logprobs, or out of range, is a 400 naming it", async () => {
        expect((await post("/v1/chat/completions", { messages: CHAT, top_logprobs: 2 })).json?.error?.param).toBe("top_logprobs");
        expect((await post("/v1/chat/completions", { messages: CHAT, logprobs: true, top_logprobs: 21 })).json?.error?.param).toBe("top_logprobs");
        expect((await post("/v1/completions", { prompt: "a", logprobs: 6 })).json?.error?.param).toBe("logprobs");
        expect((await post("/v1/chat/completions", { messages: CHAT, logprobs: "yes" })).json?.error?.param).toBe("logprobs");
    });
});

describe("tools (a Hermes-style template given to the server)", () => {
    const HERMES = readFileSync(path.join(repoRoot, "deps", "llama.cpp", "models", "templates", "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja"), "utf8");
    const tools: OpenAI.ChatCompletionTool[] = [{
        type: "function",
        function: {
            name: "get_weather",
            description: "The weather in a city",
            parameters: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Rome"] } }, required: ["city"], additionalProperties: false },
        },
    }];
    const user = { role: "user" as const, content: "What is the weather in Paris?" };

    it("a reply in the template's tool-call format streams as tool_call deltas that add up to the parsed call", async () => {
        const prompt = await chatPrompt(model, { messages: [user], tools: tools as ToolIn[], template: HERMES });
        expect(prompt.plain).toBe(false);
        const reply = new ChatReply(model, prompt);
        const text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
        const tokens = await model.tokenize(text, { addSpecial: false });
        const pieces = model.tokenPieces(tokens, { special: true });
        const decoder = new TextDecoder();
        const deltas: Record<string, unknown>[] = [];
        for (let i = 0; i < tokens.length; i++) deltas.push(...(await reply.push({ token: tokens[i]!, text: decoder.decode(pieces[i], { stream: true }) }, true)));
        const end = await reply.finish();
        deltas.push(...end.deltas);
        expect(end.parsed.toolCalls.length).toBe(1);
        expect(end.parsed.toolCalls[0]!.name).toBe("get_weather");
        expect(JSON.parse(end.parsed.toolCalls[0]!.arguments)).toEqual({ city: "Paris" });
        expect(end.parsed.content).toBe("");
        let name = "", args = "";
        for (const d of deltas) {
            expect(d.content ?? "").toBe("");
            for (const tc of (d.tool_calls ?? []) as { index: number; function: { name?: string; arguments?: string } }[]) {
                expect(tc.index).toBe(0);
                name += tc.function.name ?? "";
                args += tc.function.arguments ?? "";
            }
        }
        expect(name).toBe("get_weather");
        expect(args).toBe(end.parsed.toolCalls[0]!.arguments);
    });

    it("tool_choice \"required\": the format's grammar forces a call, returned as tool_calls (streaming and not); tools render into the prompt; tool results in the history", async () => {
        const p = await model.createPool({ slots: 1, contextSize: 1024, threads: THREADS });
        const server = await createServer({ pool: p, chatTemplate: HERMES });
        await server.listen({ host: "127.0.0.1", port: 0 });
        const c = new OpenAI({ baseURL: `http://127.0.0.1:${(server.server.address() as { port: number }).port}/v1`, apiKey: "x", maxRetries: 0 });
        try {
            // stories260K's tokens are mostly single characters (a call takes about 70), and it
            // never ends its turn: the grammar ((tool-call space)+, parallel calls allowed)
            // makes it call again until max_tokens, so the reply ends on "length".
            const ask = { model: "x", messages: [user], tools, tool_choice: "required" as const, temperature: 0, max_tokens: 120 };
            const r = await c.chat.completions.create(ask);
            const choice = r.choices[0]!;
            expect(choice.finish_reason).toBe("length");
            expect(choice.message.content).toBeNull();
            const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
            expect(call.type).toBe("function");
            expect(call.function.name).toBe("get_weather");
            expect(["Paris", "Rome"]).toContain((JSON.parse(call.function.arguments) as { city: string }).city);
            expect(call.id.length).toBeGreaterThan(0);

            const stream = await c.chat.completions.create({ ...ask, stream: true });
            let name = "", args = "", finish: string | null = null;
            for await (const chunk of stream) {
                const d = chunk.choices[0];
                if (!d) continue;
                expect(d.delta.content ?? "").toBe("");
                for (const tc of d.delta.tool_calls ?? []) {
                    if (tc.index !== 0) continue;
                    name += tc.function?.name ?? "";
                    args += tc.function?.arguments ?? "";
                }
                finish = d.finish_reason ?? finish;
            }
            expect(finish).toBe("length");
            expect(name).toBe("get_weather");
            expect(args).toBe(call.function.arguments);

            // The tools are described in the prompt; a tool result in the history renders.
            const plain = await c.chat.completions.create({ model: "x", messages: [user], temperature: 0, max_tokens: 5 });
            expect(r.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens + 20);
            const next = await c.chat.completions.create({
                model: "x", temperature: 0, max_tokens: 5, tools, tool_choice: "none",
                messages: [user, { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: "sunny" }],
            });
            expect(next.choices[0]!.message.role).toBe("assistant");
            expect(next.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens + 10);
            // "auto" (the default): the lazy tool-call grammar waits for the format's trigger; stories260K writes prose.
            const auto = await c.chat.completions.create({ model: "x", messages: [user], tools, temperature: 0, max_tokens: 8 });
            expect(auto.choices[0]!.finish_reason).toBe("length");
            expect(auto.choices[0]!.message.tool_calls ?? []).toEqual([]);
            const bad = await c.chat.completions.create({ ...ask, tool_choice: { type: "function", function: { name: "nope" } } }).then(() => null, (e: unknown) => e);
            expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
            expect((bad as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tool_choice.function.name");
            const noTools = await c.chat.completions.create({ model: "x", messages: [user], tool_choice: "required" }).then(() => null, (e: unknown) => e);
            expect((noTools as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tool_choice");
        } finally {
            await server.close();
            await p.dispose();
        }
    });
});

describe("bad requests get a 4xx that names the field", () => {
    const chat = (body: unknown) => post("/v1/chat/completions", body);
    const cases: [string, unknown, number, string | null][] = [
        ["missing messages", {}, 400, "messages"],
        ["messages not an array", { messages: "hi" }, 400, "messages"],
        ["empty messages", { messages: [] }, 400, "messages"],
        ["a bad role", { messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0].role"],
        ["content of a wrong type", { messages: [{ role: "user", content: 5 }] }, 400, "messages[0].content"],
        ["an image part", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, 400, "messages[0].content[0]"],
        ["temperature as a string", { messages: CHAT, temperature: "1" }, 400, "temperature"],
        ["temperature out of range", { messages: CHAT, temperature: 7 }, 400, "temperature"],
        ["max_tokens huge", { messages: CHAT, max_tokens: 1e15 }, 400, "max_tokens"],
        ["max_tokens negative", { messages: CHAT, max_tokens: -1 }, 400, "max_tokens"],
        ["max_tokens fractional", { messages: CHAT, max_tokens: 1.5 }, 400, "max_tokens"],
        ["an unknown field", { messages: CHAT, temprature: 1 }, 400, "temprature"],
        ["n > 1", { messages: CHAT, n: 2 }, 400, "n"],
        ["a stop list too long", { messages: CHAT, stop: Array.from({ length: 50 }, () => "x") }, 400, "stop"],
        ["an empty stop string", { messages: CHAT, stop: [""] }, 400, "stop[0]"],
        ["a logit_bias token outside the vocabulary", { messages: CHAT, logit_bias: { "99999": 5 } }, 400, "logit_bias.99999"],
        ["a logit_bias key that is not a token id", { messages: CHAT, logit_bias: { abc: 5 } }, 400, "logit_bias"],
        ["a bad response_format type", { messages: CHAT, response_format: { type: "xml" } }, 400, "response_format.type"],
        ["json_schema without its schema object", { messages: CHAT, response_format: { type: "json_schema" } }, 400, "response_format.json_schema"],
        ["a seed that is not an integer", { messages: CHAT, seed: 1.5 }, 400, "seed"],
    ];
    for (const [name, body, status, param] of cases) {
        it(name, async () => {
            const r = await chat(body);
            expect(r.status).toBe(status);
            expect(r.json?.error?.param).toBe(param);
            expect(r.json?.error?.message).toEqual(expect.any(String));
        });
    }

    it("completions: several prompts, a token outside the vocabulary, echo", async () => {
        expect((await post("/v1/completions", { prompt: ["a", "b"] })).json?.error?.param).toBe("prompt");
        expect((await post("/v1/completions", { prompt: [1, 99999] })).json?.error?.param).toBe("prompt[1]");
        expect((await post("/v1/completions", { prompt: "a", echo: true })).json?.error?.param).toBe("echo");
        expect((await post("/v1/completions", { prompt: [1, -5] })).status).toBe(400);
    });

    it("a prompt longer than a slot is context_length_exceeded", async () => {
        const r = await post("/v1/completions", { prompt: "Once upon a time ".repeat(200), max_tokens: 5 });
        expect(r.status).toBe(400);
        expect(r.json?.error?.code).toBe("context_length_exceeded");
    });

    it("malformed JSON, no body, a wrong content type, a body too large, prototype poisoning, deep nesting", async () => {
        expect((await chat('{"messages": [')).status).toBe(400);
        expect((await chat("")).status).toBe(400);
        expect((await chat("[1,2]")).status).toBe(400);
        expect((await chat("null")).status).toBe(400);
        const xml = await fetch(base + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/xml" }, body: "<hi/>" });
        expect(xml.status).toBe(415);
        // fastify reads text/plain as a string: not an object, so a 400.
        const plain = await fetch(base + "/v1/chat/completions", { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" });
        expect(plain.status).toBe(400);
        const big = await chat({ messages: [{ role: "user", content: "x".repeat(3 * 1024 * 1024) }] });
        expect(big.status).toBe(413);
        expect((await chat('{"messages":[{"role":"user","content":"x"}],"__proto__":{"x":1}}')).status).toBe(400);
        const deep = "[".repeat(100_000) + "]".repeat(100_000);
        expect((await chat(`{"messages":${deep}}`)).status).toBe(400);
        expect((await fetch(base + "/v1/nothing")).status).toBe(404);
        // Still serving.
        const ok = await client.completions.create({ model: "stories", prompt: "The cat", temperature: 0, max_tokens: 3 });
        expect(ok.choices[0]!.text.length).toBeGreaterThan(0);
    });
});

describe("health and metrics", () => {
    it("/health is ok and /metrics is Prometheus text with the counters", async () => {
        const h = await fetch(base + "/health");
        expect(h.status).toBe(200);
        expect(((await h.json()) as { status: string }).status).toBe("ok");
        const m = await fetch(base + "/metrics");
        expect(m.headers.get("content-type")).toMatch(/^text\/plain/);
        const text = await m.text();
        for (const line of text.trim().split("\n")) {
            expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[0-9.e+-]+)$/);
        }
        const completion = /^llamafuse_completion_tokens_total (\d+)$/m.exec(text);
        expect(Number(completion?.[1])).toBeGreaterThan(0);
        expect(text).toMatch(/llamafuse_http_requests_total\{route="\/v1\/chat\/completions",status="400"\} \d+/);
        expect(text).toMatch(/^llamafuse_slots 4$/m);
    });
});

describe("a burst of requests over HTTP", () => {
    it("requests that arrived together start in one step, even when their bodies come one by one (src/server/arrivals.ts)", async () => {
        // Headers of 4 requests first, their bodies after: each body lets a handler run, and
        // without the gate the first one would start its prompt alone, the others joining
        // later steps. With it, all 4 prompts are in the first step and every later step is
        // a decode of the 4 streams: maxTokens + 1 steps, none mixing prompt and generated
        // tokens (as for a pool's own burst, test/native/pool.test.ts).
        const p = await model.createPool({ slots: 4, contextSize: 128, threads: THREADS });
        for (const bad of [-1, 1.5, 5000, "5"]) {
            await expect(createServer({ pool: p, batchWindowMs: bad as number })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        }
        const server = await createServer({ pool: p });
        await server.listen({ host: "127.0.0.1", port: 0 });
        const port = (server.server.address() as { port: number }).port;
        const maxTokens = 8;
        try {
            for (let round = 0; round < 2; round++) {
                const before = p.context.schedulerStats() ?? { steps: 0, mixedSteps: 0 };
                const bodies = Array.from({ length: 4 }, (_, s) => JSON.stringify({
                    prompt: Array.from({ length: 20 }, (_, i) => 30 + ((round * 97 + s * 31 + i * 7) % 400)),
                    max_tokens: maxTokens, temperature: 0, logit_bias: { [model.info.eos]: -100 },
                }));
                const sockets = await Promise.all(bodies.map((b) => new Promise<Socket>((resolve, reject) => {
                    const sock = connect(port, "127.0.0.1", () => {
                        sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n`);
                        resolve(sock);
                    });
                    sock.on("error", reject);
                })));
                const responses = sockets.map((sock) => new Promise<string>((resolve) => {
                    let text = "";
                    sock.on("data", (d) => (text += d.toString()));
                    sock.on("end", () => resolve(text));
                }));
                await new Promise((r) => setTimeout(r, 50)); // the headers are read
                sockets.forEach((sock, i) => sock.write(bodies[i]!));
                for (const res of await Promise.all(responses)) {
                    expect(res.startsWith("HTTP/1.1 200")).toBe(true);
                    const json = JSON.parse(res.slice(res.indexOf("\r\n\r\n") + 4)) as { usage: { completion_tokens: number } };
                    expect(json.usage.completion_tokens).toBe(maxTokens);
                }
                const after = p.context.schedulerStats()!;
                expect({ steps: after.steps - before.steps, mixedSteps: after.mixedSteps - before.mixedSteps }).toEqual({ steps: maxTokens + 1, mixedSteps: 0 });
            }
        } finally {
            await server.close();
            await p.dispose();
        }
    });
});

describe("API key and the queue bound", () => {
    it("refuses requests without the key (but not /health), and answers 429 past the queue", async () => {
        const p = await model.createPool({ slots: 1, queueLimit: 0, contextSize: 256, threads: THREADS });
        const keyed = await createServer({ pool: p, apiKey: "sekret" });
        await keyed.listen({ host: "127.0.0.1", port: 0 });
        const url = `http://127.0.0.1:${(keyed.server.address() as { port: number }).port}`;
        try {
            expect((await fetch(url + "/v1/models")).status).toBe(401);
            expect((await fetch(url + "/v1/models", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
            expect((await fetch(url + "/health")).status).toBe(200);
            const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sekret", maxRetries: 0 });
            expect((await c.models.list()).data.length).toBe(1);
            const wrong = await new OpenAI({ baseURL: `${url}/v1`, apiKey: "bad", maxRetries: 0 }).models.list().then(() => null, (e: unknown) => e);
            expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);

            // One slot, no queue: while a generation holds the slot, the next request is a 429.
            const hold = p.generate("Once upon a time", { maxTokens: 50 });
            await hold.next();
            const busy = await c.completions.create({ model: "x", prompt: "The dog", max_tokens: 2 }).then(() => null, (e: unknown) => e);
            expect(busy).toBeInstanceOf(OpenAI.RateLimitError);
            await hold.return(undefined as never);
            await new Promise((r) => setTimeout(r, 50));
            expect((await c.completions.create({ model: "x", prompt: "The dog", max_tokens: 2 })).choices.length).toBe(1);
        } finally {
            await keyed.close();
            await p.dispose();
        }
    });
});

describe("disconnects under load", () => {
    const N = Number(process.env.LLAMAFUSE_SERVER_ABORTS ?? 50);
    it(`${N} requests aborted at random moments leave the server serving, with the same text and flat memory`, async () => {
        const before = await reference("Tom and Sue", 20);
        let seed = 7;
        const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
        const one = async (i: number) => {
            const ac = new AbortController();
            const timer = setTimeout(() => ac.abort(), Math.floor(rand() * 40));
            try {
                const body = { model: "x", prompt: `Once upon a time ${i % 7}`, max_tokens: 64, temperature: 0.8, stream: i % 2 === 0 };
                const res = await fetch(base + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: ac.signal });
                await res.text();
            } catch {
                // aborted by us: that is the point
            } finally {
                clearTimeout(timer);
            }
        };
        // The first half warms up (JIT, fastify's caches, the allocator's pools); memory is
        // measured over the second half, where a leak per request would show.
        const half = Math.floor(N / 2);
        const batch = async (from: number, to: number) => {
            for (let i = from; i < to; i += 8) await Promise.all(Array.from({ length: Math.min(8, to - i) }, (_, k) => one(i + k)));
        };
        await batch(0, half);
        global.gc?.();
        const rss0 = process.memoryUsage().rss;
        await batch(half, N);
        // Every slot comes back.
        const t0 = Date.now();
        while (pool.stats().slots.some((s) => s.busy) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
        expect(pool.stats().slots.every((s) => !s.busy)).toBe(true);
        expect(pool.stats().queued).toBe(0);
        const after = await client.completions.create({ model: "x", prompt: "Tom and Sue", temperature: 0, max_tokens: 20 });
        expect(after.choices[0]!.text).toBe(before);
        const metrics = await (await fetch(base + "/metrics")).text();
        expect(Number(/^llamafuse_client_disconnects_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
        global.gc?.();
        const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
        console.log(`disconnects: ${N} requests; resident memory grew ${grown.toFixed(1)} MiB over the last ${N - half}`);
        expect(grown).toBeLessThan(32);
    });
});

describe("embeddings", () => {
    const create = (m: Model) => (m as unknown as { createEmbeddingContext?: (o: unknown) => Promise<Embedder & { dispose(): Promise<void> }> }).createEmbeddingContext;
    it("/v1/embeddings returns the embedding context's vectors (floats and base64, through the openai client)", async (t) => {
        if (typeof create(model) !== "function") return t.skip();
        const embedder = await create(model)!.call(model, { threads: THREADS });
        const p = await model.createPool({ slots: 1, contextSize: 128, threads: THREADS });
        const server = await createServer({ pool: p, extraRoutes: [embeddingsRoute(embedder)] });
        await server.listen({ host: "127.0.0.1", port: 0 });
        const url = `http://127.0.0.1:${(server.server.address() as { port: number }).port}`;
        try {
            const inputs = ["Once upon a time", "The dog ran"];
            const expected = await embedder.embed(inputs);
            const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0 });
            // The client asks for base64 and decodes it to floats.
            const r = await c.embeddings.create({ model: "x", input: inputs });
            expect(r.data.map((d) => d.index)).toEqual([0, 1]);
            // Equal within float32 noise: ggml's results move in the last bits with the batch's shape.
            const close = (got: number[], want: Float32Array) => {
                expect(got.length).toBe(want.length);
                let dot = 0;
                for (let j = 0; j < want.length; j++) {
                    expect(Math.abs(got[j]! - want[j]!)).toBeLessThan(1e-4);
                    dot += got[j]! * want[j]!;
                }
                expect(dot).toBeGreaterThan(0.99999); // unit vectors: cosine
            };
            r.data.forEach((d, i) => close(d.embedding, expected[i]!));
            const floats = await c.embeddings.create({ model: "x", input: inputs[0]!, encoding_format: "float" });
            close(floats.data[0]!.embedding, expected[0]!);
            expect(floats.usage.prompt_tokens).toBe((await model.tokenize(inputs[0]!)).length);
            const bad = await fetch(`${url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: [[1, 99999]] }) });
            expect(bad.status).toBe(400);
            expect(((await bad.json()) as ErrorJson).error?.param).toBe("input[0][1]");
        } finally {
            await server.close();
            await p.dispose();
            await embedder.dispose();
        }
    });
});
