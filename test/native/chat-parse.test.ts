// Replies parsed by each template format's own parser (llama.cpp's common/chat), on model
// outputs and expected messages taken from llama.cpp's tests/test-chat.cpp: content, reasoning
// (<think>, gpt-oss's analysis channel) and tool calls in the Hermes/Qwen, Mistral, Functionary
// and DeepSeek R1 formats.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { requireToolCallsNow } from "../../src/chat/constraints.js";
import { vocabDir } from "../helpers/models.js";

// test-chat.cpp's special_function_tool and its expected call.
const SPECIAL_FUNCTION = {
    type: "function" as const,
    function: { name: "special_function", description: "I'm special", parameters: { type: "object", properties: { arg1: { type: "integer", description: "The arg." } }, required: ["arg1"] } },
};
const CALL = { name: "special_function", arguments: '{"arg1":1}' };

interface Case {
    template: string;
    tools?: boolean;
    output: string;
    content: string;
    reasoning?: string;
    calls?: { name: string; arguments: string; id?: string }[];
}

const CASES: Case[] = [
    { template: "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", tools: true, output: '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}</tool_call>', content: "", calls: [CALL] },
    { template: "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", tools: true, output: 'Hello, world!\nWhat\'s up?<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}</tool_call>', content: "Hello, world!\nWhat's up?", calls: [CALL] },
    { template: "Qwen-Qwen2.5-7B-Instruct", tools: true, output: '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>', content: "", calls: [CALL] },
    { template: "mistralai-Mistral-Nemo-Instruct-2407", tools: true, output: 'Hello, world!\nWhat\'s up?', content: "Hello, world!\nWhat's up?" },
    { template: "mistralai-Mistral-Nemo-Instruct-2407", tools: true, output: '[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]', content: "", calls: [{ ...CALL, id: "123456789" }] },
    { template: "meetkai-functionary-medium-v3.1", tools: true, output: '<function=special_function>{"arg1": 1}</function>', content: "", calls: [CALL] },
    { template: "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", output: "I'm\nthinking</think>Hello, world!\nWhat's up?", content: "Hello, world!\nWhat's up?", reasoning: "I'm\nthinking" },
    { template: "openai-gpt-oss-120b", output: "<|channel|>final<|message|>Hello, world!\nWhat's up?", content: "Hello, world!\nWhat's up?" },
    { template: "openai-gpt-oss-120b", output: "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?", content: "Hello, world!\nWhat's up?", reasoning: "I'm\nthinking" },
];

let model: Model;

beforeAll(async () => {
    model = await loadModel(path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), { vocabOnly: true });
});

afterAll(async () => {
    await model?.dispose();
});

describe("replies parse into content, reasoning and tool calls", () => {
    it.each(CASES.map((c) => [`${c.template}: ${JSON.stringify(c.output).slice(0, 60)}`, c] as const))("%s", async (_name, c) => {
        const source = readFileSync(path.join(vocabDir, "templates", `${c.template}.jinja`), "utf8");
        const templates = await model.chatTemplates({ kind: "jinja", source });
        const rendered = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: c.tools ? [SPECIAL_FUNCTION] : undefined });
        const parsed = await templates.parse(c.output, rendered);
        expect(parsed.content).toBe(c.content);
        // The parser keeps the newline the generation prompt puts after <think> (DeepSeek R1);
        // llama.cpp's test harness compares after its own accumulation, so compare trimmed.
        expect(parsed.reasoning.trim()).toBe(c.reasoning ?? "");
        const calls = parsed.toolCalls.map((t) => ({ name: t.name, arguments: JSON.stringify(JSON.parse(t.arguments)), ...(c.calls?.some((x) => x.id) ? { id: t.id } : {}) }));
        expect(calls).toEqual(c.calls ?? []);
    });

    // A loaded parser is kept (the last 8, by their exact parameters): a streamed reply is
    // parsed after every token. Parsing the cases round-robin (more parsers than are kept, so
    // some are loaded again) must give each case's answer every time, as a fresh load does.
    it("parsers kept loaded between parses give the same answers, also after being dropped", async () => {
        const setups = await Promise.all(CASES.map(async (c) => {
            const source = readFileSync(path.join(vocabDir, "templates", `${c.template}.jinja`), "utf8");
            const templates = await model.chatTemplates({ kind: "jinja", source });
            const rendered = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: c.tools ? [SPECIAL_FUNCTION] : undefined });
            return { c, templates, rendered };
        }));
        // Reasoning off too: the same parser with other flags is another kept entry.
        const runs = [...setups.map((x) => ({ ...x, parseReasoning: true })), ...setups.map((x) => ({ ...x, parseReasoning: false }))];
        expect(runs.length).toBeGreaterThan(8);
        const first = await Promise.all(runs.map((r) => r.templates.parse(r.c.output, r.rendered, { parseReasoning: r.parseReasoning })));
        for (let round = 0; round < 3; round++) {
            for (let i = 0; i < runs.length; i++) {
                const r = runs[i]!;
                expect(await r.templates.parse(r.c.output, r.rendered, { parseReasoning: r.parseReasoning }), `${r.c.template} round ${round}`).toEqual(first[i]);
            }
        }
        // The answers are the cases' own (checked one by one above), not one case's answer reused.
        for (let i = 0; i < setups.length; i++) expect(first[i]!.content, runs[i]!.c.template).toBe(runs[i]!.c.content);
    });

    // Replies up to 1 KB are parsed on the calling thread, longer ones on a worker: the same
    // reply padded past the limit must parse the same way there, and bad parameters must fail
    // with the same code on both paths.
    it("short replies (parsed on the calling thread) and long ones (on a worker) parse alike", async () => {
        const source = readFileSync(path.join(vocabDir, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"), "utf8");
        const templates = await model.chatTemplates({ kind: "jinja", source });
        const rendered = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: [SPECIAL_FUNCTION] });
        const call = (pad: string) => `${pad}<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>`;
        for (const pad of ["Sure. ", `${"Sure, let me look that up. ".repeat(60)}`]) {
            const parsed = await templates.parse(call(pad), rendered);
            expect(parsed.content).toBe(pad);
            expect(parsed.toolCalls.map((t) => ({ name: t.name, arguments: JSON.stringify(JSON.parse(t.arguments)) }))).toEqual([CALL]);
        }
        expect(call("Sure, let me look that up. ".repeat(60)).length * 3).toBeGreaterThan(1024);
        for (const text of ["Sure.", "x".repeat(2000)]) {
            await expect(templates.parse(text, { ...rendered, format: 1e6 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: "unknown chat format" });
        }
    });

    it("a tool-call reply with tools off stays plain content", async () => {
        const source = readFileSync(path.join(vocabDir, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"), "utf8");
        const templates = await model.chatTemplates({ kind: "jinja", source });
        const rendered = await templates.render({ messages: [{ role: "user", content: "Hello" }] });
        const text = '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>';
        const parsed = await templates.parse(text, rendered, { parseToolCalls: false });
        expect(parsed.toolCalls).toEqual([]);
    });

    it("tool calling renders the lazy grammar's triggers for auto and a forced grammar for required", async () => {
        const source = readFileSync(path.join(vocabDir, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"), "utf8");
        const templates = await model.chatTemplates({ kind: "jinja", source });
        const auto = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: [SPECIAL_FUNCTION], toolChoice: "auto" });
        expect(auto.grammar).toContain("special_function");
        expect(auto.grammarLazy).toBe(true);
        expect(auto.grammarTriggers.length).toBeGreaterThan(0);
        const required = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: [SPECIAL_FUNCTION], toolChoice: "required" });
        expect(required.grammarLazy).toBe(false);
        expect(required.grammar).toContain("special_function");
    });

    it.each([
        ["Qwen-Qwen2.5-7B-Instruct", 'root ::= "<|im_start|>assistant\\n" space tool-calls'],
        ["meta-llama-Llama-3.1-8B-Instruct", 'root ::= "<|start_header_id|>assistant<|end_header_id|>\\n\\n" space tool-call'],
        ["Qwen-Qwen3-0.6B", 'root ::= "<|im_start|>assistant\\n" space ("<think>" "\\n"? until-13 "\\n"? "</think>" "\\n"? "\\n"?)? tool-calls'],
        ["openai-gpt-oss-120b", "root ::= (start any)* start tool-call"],
    ])("a required call leaves no free text before it (%s)", async (template, root) => {
        const source = readFileSync(path.join(vocabDir, "templates", `${template}.jinja`), "utf8");
        const templates = await model.chatTemplates({ kind: "jinja", source });
        const rendered = await templates.render({ messages: [{ role: "user", content: "Hello" }], tools: [SPECIAL_FUNCTION], toolChoice: "required" });
        const strict = requireToolCallsNow(rendered.grammar);
        expect(strict.split("\n").find((l) => l.startsWith("root ::="))).toBe(root);
        // Only the root rule changes.
        expect(strict.split("\n").filter((l) => !l.startsWith("root ::="))).toEqual(rendered.grammar.split("\n").filter((l) => !l.startsWith("root ::=")));
    });
});
