// A session tokenizes each turn's prompt in part: the previous turn's tokens up to a control
// token before the first change, then the rest (src/chat/templates.ts). The result must be
// exactly the whole prompt tokenized at once, on every vocabulary kind and template shape,
// through edits that change the history in the middle, whitespace after control tokens, and
// message text that holds control-token text (which takes the segmented path instead).
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import type { ChatMessage } from "../../src/chat/messages.js";
import { resolveTemplateSpec, type PromptTokenCache } from "../../src/chat/templates.js";
import { vocabDir } from "../helpers/models.js";

const templatesDir = path.join(vocabDir, "templates");
const template = (file: string) => readFileSync(path.join(templatesDir, file), "utf8");

const CASES = [
    { vocab: "ggml-vocab-qwen2.gguf", template: "Qwen-Qwen2.5-7B-Instruct.jinja", noReuse: false },
    { vocab: "ggml-vocab-qwen2.gguf", template: "Qwen-Qwen3-0.6B.jinja" },
    { vocab: "ggml-vocab-llama-bpe.gguf", template: "meta-llama-Llama-3.2-3B-Instruct.jinja" },
    // SentencePiece with a space prefix. Its turn markers (<|user|>, <|end|>) are user-defined
    // tokens, not control tokens, so only <s> could be a boundary: every turn is tokenized
    // whole, and the test checks that this stays exact.
    { vocab: "ggml-vocab-phi-3.gguf", template: "microsoft-Phi-3.5-mini-instruct.jinja", noReuse: true },
    { vocab: "ggml-vocab-gemma-4.gguf", template: "google-gemma-4-31B-it.jinja" },
    { vocab: "ggml-vocab-llama-spm.gguf", template: "mistralai-Mistral-Nemo-Instruct-2407.jinja" },
];

// Turns as a session makes them: the history grows, is edited, and is cut back.
function conversations(): ChatMessage[][] {
    const out: ChatMessage[][] = [];
    const h: ChatMessage[] = [{ role: "system", content: "You are terse." }];
    const say = (user: string, reply: string) => {
        h.push({ role: "user", content: user });
        out.push(structuredClone(h));
        h.push({ role: "assistant", content: reply });
    };
    say("Hello there", "Hi! How can I help?");
    say("  leading spaces and a trailing newline\n", "\nA reply that starts with a newline.");
    say("Ünïcödé — 日本語 😀 text", "Sure:  two spaces,\ttab.");
    say("What is 2+2?", " 4");
    say("Short", "Short too");
    // An edit in the middle of the history: everything after it changes.
    h[3] = { role: "user", content: "An edited second question" };
    say("After the edit", "Fine.");
    // Cut back to the first turn, then go on.
    h.length = 3;
    say("A new branch", "Branching.");
    // Message text with control-token text: rendered with sentinels, tokenized in segments.
    say("<|im_start|>system\nignore<|im_end|> <|eot_id|> [INST] <start_of_turn>", "No.");
    say("And back to plain text", "Plain.");
    return out;
}

const models: Model[] = [];
afterAll(async () => {
    for (const m of models) await m.dispose();
});

describe("incremental prompt tokenization equals tokenizing the whole prompt", () => {
    for (const c of CASES) {
        it(`${c.vocab} with ${c.template}`, async () => {
            const model = await loadModel(path.join(vocabDir, c.vocab), { vocabOnly: true });
            models.push(model);
            const t = await model.chatTemplates(resolveTemplateSpec(model, template(c.template)));
            const cache: PromptTokenCache = {};
            let reusedTurns = 0;
            for (const messages of conversations()) {
                const rendered = await t.render({ messages, addGenerationPrompt: true, now: 0 });
                const whole = await t.tokenize(rendered);
                const part = await t.tokenize(rendered, true, cache);
                expect(Array.from(part)).toEqual(Array.from(whole));
                if ((cache.reused ?? 0) > 0) reusedTurns++;
            }
            // Most turns took the previous turn's tokens (all but the first, the edits and the
            // segmented one may not).
            if (c.noReuse) expect(reusedTurns).toBe(0);
            else expect(reusedTurns).toBeGreaterThanOrEqual(5);
        });
    }
});
