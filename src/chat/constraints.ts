// The sampling options that hold a reply to what a chat render asks for: llama.cpp's grammar
// for tool calls or a JSON schema, lazy (free text until the format's trigger) or forced,
// advanced past the assistant turn's opening that the prompt already ends with. Shared by
// ChatSession and the server, so that both constrain replies the same way.
import type { Model } from "../model.js";
import type { NativeChatRender } from "./native.js";

export interface ReplyConstraints {
    grammar?: string;
    grammarTriggers?: { patterns: string[]; tokens: number[] };
    grammarPrefix?: number[];
}

/**
 * `required`: a tool call is required, so the reply may not open with free text (see
 * requireToolCallsNow). A render without a grammar gives no constraints.
 */
export async function replyConstraints(model: Model, rendered: NativeChatRender, o: { required: boolean }): Promise<ReplyConstraints> {
    if (!rendered.grammar) return {};
    if (rendered.grammarLazy) {
        return {
            grammar: rendered.grammar,
            grammarTriggers: {
                patterns: rendered.grammarTriggers.filter((t) => t.type !== "token").map(triggerPattern),
                tokens: rendered.grammarTriggers.filter((t) => t.type === "token").map((t) => t.token),
            },
        };
    }
    const prefix = await generationPromptTokens(model, rendered.generationPrompt);
    return {
        grammar: o.required ? requireToolCallsNow(rendered.grammar) : rendered.grammar,
        ...(prefix.length ? { grammarPrefix: prefix } : {}),
    };
}

/**
 * llama.cpp's grammars for a required tool call let free text come first
 * (`root ::= <opening> <thinking>? until-N? tool-calls`), so a model may talk until it runs
 * out of tokens without ever calling. With a call required, the reply is held to the
 * thinking block (where the format has one) and the calls: the optional free text right
 * before them is removed. Grammars of another shape are returned unchanged.
 */
export function requireToolCallsNow(grammar: string): string {
    return grammar.replace(/^(root ::= .*?)\s+until-\d+\?(\s+tool-calls?)\s*$/m, "$1$2");
}

/** A trigger as the regular expression llama.cpp's lazy grammar takes (as common/sampling makes it). */
function triggerPattern(t: { type: string; value: string }): string {
    if (t.type === "word") return t.value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (t.type === "patternFull") {
        if (t.value === "") return "^$";
        return (t.value.startsWith("^") ? "" : "^") + t.value + (t.value.endsWith("$") ? "" : "$");
    }
    return t.value;
}

/**
 * The generation prompt's tokens as llama.cpp's common/sampling feeds them to a grammar:
 * template text (special tokens parsed), without a leading whitespace piece the tokenizer
 * may put before a first special token.
 */
async function generationPromptTokens(model: Model, text: string): Promise<number[]> {
    if (text === "") return [];
    const tokens = Array.from(await model.tokenize(text, { addSpecial: false, parseSpecial: true }));
    const first = tokens.length ? new TextDecoder().decode(model.tokenPieces([tokens[0]!], { special: true })[0]) : "";
    if (/^\s/.test(first) && !/^\s/.test(text)) tokens.shift();
    return tokens;
}
