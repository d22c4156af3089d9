// Chat templates rendered by llama.cpp's engine (model.applyChatTemplate) against Hugging
// Face's apply_chat_template semantics, on every template in the pinned tree's
// models/templates/ and every conversation shape of test/helpers/chat-conversations.ts.
// References: Python's jinja2 sandbox configured as transformers configures it (when python3
// has jinja2) and @huggingface/jinja (always). Where llama.cpp deliberately renders something
// else, the difference is named below and checked to be exactly that difference.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { CONVERSATIONS, type Conversation } from "../helpers/chat-conversations.js";
import { hasPythonJinja, renderHfJs, renderHfPython, type HfRenderInput } from "../helpers/hf-chat-template.js";
import { vocabDir } from "../helpers/models.js";

const templatesDir = path.join(vocabDir, "templates");
const FILES = readdirSync(templatesDir).filter((f) => f.endsWith(".jinja")).sort();
const SOURCES = new Map(FILES.map((f) => [f, readFileSync(path.join(templatesDir, f), "utf8")]));

let model: Model;
let bos = "";
let eos = "";
const now = Date.now();

beforeAll(async () => {
    // Any vocabulary gives the templates their bos_token/eos_token; llama-bpe's are Llama 3's.
    model = await loadModel(path.join(vocabDir, "ggml-vocab-llama-bpe.gguf"), { vocabOnly: true });
    bos = await model.detokenize([model.info.bos], { unparseSpecial: true });
    eos = await model.detokenize([model.info.eos], { unparseSpecial: true });
});

afterAll(async () => {
    await model?.dispose();
});

function input(conv: Conversation): HfRenderInput {
    return { messages: conv.messages, add_generation_prompt: conv.addGenerationPrompt, bos_token: bos, eos_token: eos, now, enable_thinking: true, ...(conv.tools ? { tools: conv.tools } : {}) };
}

async function ours(file: string, conv: Conversation): Promise<string> {
    return model.applyChatTemplate(conv.messages as never, { template: SOURCES.get(file)!, addGenerationPrompt: conv.addGenerationPrompt, now, ...(conv.tools ? { tools: conv.tools as never } : {}) });
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const d = new Date(now);
const today = `${String(d.getDate()).padStart(2, "0")} ${MONTHS[d.getMonth()]} ${d.getFullYear()}`;

/**
 * Where llama.cpp's common/chat deliberately renders something other than the template
 * alone would. Each entry turns the reference into what llama.cpp renders; the test then
 * requires exact equality, so a difference that changes shape fails.
 */
const DIFFERENCES: { files: string[]; convs?: string[]; pythonOnly?: boolean; why: string; apply: (ref: string) => string }[] = [
    {
        files: ["meta-llama-Llama-3.1-8B-Instruct.jinja", "meta-llama-Llama-3.3-70B-Instruct.jinja"],
        why: "llama.cpp's Llama 3.x handler passes today's date as date_string; the template alone falls back to 26 Jul 2024",
        apply: (r) => r.replace("Today Date: 26 Jul 2024", `Today Date: ${today}`),
    },
    {
        files: ["openai-gpt-oss-120b.jinja"], convs: ["closed"],
        why: "llama.cpp ends a final assistant message in the history with <|end|> (harmony's rule for past turns) where the template writes <|return|>",
        apply: (r) => r.replace(/<\|return\|>$/, "<|end|>"),
    },
    {
        files: ["llama-cpp-rwkv-world.jinja"], convs: ["closed"],
        why: "llama.cpp's generic handler opens the next assistant turn after a closed one",
        apply: (r) => `${r}Assistant: <think>`,
    },
    {
        files: ["upstage-Solar-Open-100B.jinja"], convs: ["closed"],
        why: "llama.cpp's generic handler opens the next assistant turn after a closed one",
        apply: (r) => `${r}<|begin|>assistant`,
    },
    {
        files: ["google-gemma-4-31B-it-interleaved.jinja"], convs: ["tools"],
        why: "llama.cpp's Gemma 4 handler folds a tool result into the model turn that made the call (<|tool_response>), as Gemma 4's format has it",
        apply: (r) => r.replace(/<turn\|>\n<\|turn>tool\n\{"temp": 21\}<turn\|>\n<\|turn>model\n$/, "<|tool_response>response:get_weather{temp:21}<tool_response|>"),
    },
    {
        files: ["meetkai-functionary-medium-v3.1.jinja"], convs: ["tools"], pythonOnly: true,
        why: 'Python\'s markupsafe escapes a string added to a |safe one ("..."|safe + x) into &#34;; llama.cpp\'s engine and @huggingface/jinja do not',
        apply: (r) => r.replaceAll("&#34;", '"'),
    },
];

function expected(file: string, conv: Conversation, ref: string, python: boolean): string {
    for (const diff of DIFFERENCES) {
        if (diff.files.includes(file) && (!diff.convs || diff.convs.includes(conv.name)) && (python || !diff.pythonOnly)) ref = diff.apply(ref);
    }
    return ref;
}

describe.each(CONVERSATIONS.map((c) => [c.name, c] as const))("%s", (_name, conv) => {
    it.skipIf(!hasPythonJinja())("equals Python's jinja2 as transformers sets it up, on every template that renders this conversation", async () => {
        const refs = renderHfPython(FILES.map((f) => SOURCES.get(f)!), input(conv));
        const mismatched: string[] = [];
        let compared = 0;
        for (let i = 0; i < FILES.length; i++) {
            const ref = refs[i]!;
            if (!("ok" in ref)) continue; // the template itself refuses this conversation (raise_exception, an unknown tag)
            compared++;
            const got = await ours(FILES[i]!, conv).catch((e: Error) => `ERROR ${e.message}`);
            if (got !== expected(FILES[i]!, conv, ref.ok, true)) mismatched.push(FILES[i]!);
        }
        expect(compared).toBeGreaterThanOrEqual(conv.tools ? 45 : 55);
        expect(mismatched).toEqual([]);
    });

    it("equals @huggingface/jinja on every template it can render", async () => {
        const mismatched: string[] = [];
        let compared = 0;
        for (const file of FILES) {
            let ref: string;
            try {
                ref = renderHfJs(SOURCES.get(file)!, input(conv));
            } catch {
                continue; // syntax @huggingface/jinja lacks (e.g. {% generation %}), or raise_exception
            }
            // A template that wants arguments as a JSON string, given the object (Python raises there).
            if (ref.includes("[object Map]")) continue;
            compared++;
            const got = await ours(file, conv).catch((e: Error) => `ERROR ${e.message}`);
            if (got !== expected(file, conv, ref, false)) mismatched.push(file);
        }
        expect(compared).toBeGreaterThanOrEqual(conv.tools ? 45 : 50);
        expect(mismatched).toEqual([]);
    });
});

describe("the named differences are real", () => {
    it.each(DIFFERENCES.map((d) => [d.why, d] as const))("%s", async (_why, diff) => {
        // Each named difference must change the rendering (a stale entry would hide nothing and say something false).
        const conv = CONVERSATIONS.find((c) => !diff.convs || diff.convs.includes(c.name))!;
        const ref = renderHfJs(SOURCES.get(diff.files[0]!)!, input(conv));
        if (diff.pythonOnly) return expect(diff.apply(ref)).toBe(ref); // nothing to undo in the JS reference
        expect(diff.apply(ref)).not.toBe(ref);
    });
});
