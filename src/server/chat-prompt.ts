// OpenAI chat messages -> prompt tokens, and the generated reply -> content, reasoning and
// tool calls. Both come from the model's chat template through llama.cpp's common/chat (the
// chat layer's ChatTemplates: render, tokenize with message text never parsed as control
// tokens, parse with the format's own parser). A model without a template gets ChatML, as
// llama-server does.
//
// The chat layer is reached through the small structural types below rather than its
// module, so that this file also builds and runs against a model that only has the older
// applyChatTemplate(messages, { addAssistant }) (plain text, no tools).
import type { Model } from "../model.js";
import { ApiError, badRequest } from "./errors.js";

export interface ChatMessageIn {
    role: "system" | "developer" | "user" | "assistant" | "tool";
    content?: string | null | { type: string; text?: string }[];
    name?: string;
    tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
    tool_call_id?: string;
    reasoning_content?: string | null;
    refusal?: string | null;
}

export interface ToolIn {
    type: "function";
    function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

export type ToolChoiceIn = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

export interface ParsedReply {
    content: string;
    reasoning: string;
    toolCalls: { id: string; name: string; arguments: string }[];
}

/** What a render gives back (common_chat_templates_apply's result, as the chat layer returns it). */
interface Rendered {
    prompt: string;
    generationPrompt: string;
    grammar: string;
    grammarLazy: boolean;
    grammarTriggers: { type: string; value: string; token: number }[];
    additionalStops: string[];
    parser: string;
    supportsThinking: boolean;
}

interface Templates {
    render(req: Record<string, unknown>): Promise<Rendered>;
    tokenize(rendered: Rendered): Promise<Int32Array>;
    parse(text: string, rendered: Rendered, o?: { partial?: boolean }): Promise<ParsedReply>;
}

type TemplateSpec = { kind: "model" } | { kind: "builtin"; name: string } | { kind: "jinja"; source: string };

interface ChatLayerModel {
    chatTemplates?: (spec: TemplateSpec) => Promise<Templates>;
}

export interface ChatPrompt {
    tokens: Int32Array;
    stops: string[];
    grammar?: string;
    grammarTriggers?: { patterns: string[]; tokens: number[] };
    /** Parses the reply so far (raw: special tokens rendered as text). */
    parse: ((raw: string, partial: boolean) => Promise<ParsedReply>) | null;
    /** True when the reply is plain text: no tool calls or reasoning to separate out. */
    plain: boolean;
}

/** Plain text of a message's content (text parts joined; other parts refused, naming them). */
function messageText(m: ChatMessageIn, i: number): string {
    if (m.content === undefined || m.content === null) return "";
    if (typeof m.content === "string") return m.content;
    return m.content
        .map((part, j) => {
            if (part.type !== "text" || typeof part.text !== "string") {
                throw badRequest(`messages[${i}].content[${j}]`, `only text parts ({ type: "text", text }) are supported, not ${JSON.stringify(part.type)}`, "unsupported_value");
            }
            return part.text;
        })
        .join("");
}

/**
 * llama.cpp's tool-call grammars start with the generation prompt (the assistant turn's
 * opening, which the prompt already ends with): common_sampler_init feeds those tokens to
 * the grammar before sampling ("prefill"). Our sampler chain has no prefill yet, so a
 * grammar whose root begins with that literal gets the literal dropped, which is the same.
 */
export function dropPrefill(grammar: string, generationPrompt: string): string {
    if (generationPrompt === "") return grammar;
    const head = `root ::= ${JSON.stringify(generationPrompt)}`;
    return grammar.split("\n").map((line) => (line.startsWith(head) ? `root ::= ${line.slice(head.length).trimStart()}` : line)).join("\n");
}

/** A trigger as the regular expression llama.cpp's lazy grammar takes (as common/sampling does). */
function triggerPattern(t: { type: string; value: string }): string {
    if (t.type === "word") return t.value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (t.type === "patternFull") {
        if (t.value === "") return "^$";
        return (t.value.startsWith("^") ? "" : "^") + t.value + (t.value.endsWith("$") ? "" : "$");
    }
    return t.value;
}

export function hasChatLayer(model: Model): boolean {
    return typeof (model as unknown as ChatLayerModel).chatTemplates === "function";
}

/**
 * The template given to the server (Jinja source or a llama.cpp built-in name), else the
 * model's own, else ChatML (with its end marker as a stop string: a model that never learned
 * ChatML has no token for it).
 */
async function templatesOf(model: Model, template: string | undefined): Promise<{ templates: Templates; stops: string[] }> {
    const m = model as unknown as ChatLayerModel;
    if (template !== undefined) {
        const spec: TemplateSpec = template.includes("{") ? { kind: "jinja", source: template } : { kind: "builtin", name: template };
        return { templates: await m.chatTemplates!(spec), stops: [] };
    }
    const own = typeof model.info.metadata["tokenizer.chat_template"] === "string";
    if (own) return { templates: await m.chatTemplates!({ kind: "model" }), stops: [] };
    return { templates: await m.chatTemplates!({ kind: "builtin", name: "chatml" }), stops: ["<|im_end|>"] };
}

export interface ChatRequest {
    messages: ChatMessageIn[];
    tools?: ToolIn[];
    toolChoice?: ToolChoiceIn;
    parallelToolCalls?: boolean;
    /** A JSON schema the reply must follow (response_format). */
    jsonSchema?: Record<string, unknown> | boolean;
    /** Jinja source or a built-in template name that replaces the model's template. */
    template?: string;
}

/** Renders and tokenizes a chat request; the result carries what generation and parsing need. */
export async function chatPrompt(model: Model, req: ChatRequest): Promise<ChatPrompt> {
    const messages = req.messages.map((m, i) => {
        const out: Record<string, unknown> = { role: m.role === "developer" ? "system" : m.role, content: messageText(m, i) };
        if (m.name !== undefined) out.name = m.name;
        if (m.tool_calls?.length) out.tool_calls = m.tool_calls;
        if (m.tool_call_id !== undefined) out.tool_call_id = m.tool_call_id;
        if (typeof m.reasoning_content === "string") out.reasoning_content = m.reasoning_content;
        return out;
    });
    let tools = req.tools?.length ? req.tools : undefined;
    let mode: "auto" | "none" | "required" = "auto";
    const choice = req.toolChoice;
    if (choice === "none") tools = undefined;
    else if (choice === "required") mode = "required";
    else if (typeof choice === "object") {
        const name = choice.function.name;
        tools = tools?.filter((t) => t.function.name === name);
        if (!tools?.length) throw badRequest("tool_choice.function.name", `no tool named ${JSON.stringify(name)} in tools`);
        mode = "required";
    }
    if (mode === "required" && !tools) throw badRequest("tool_choice", "\"required\" needs tools");
    if (tools && req.jsonSchema !== undefined) throw badRequest("response_format", "cannot be combined with tools (tool_choice \"none\" turns them off)", "unsupported_value");
    // The JSON schema is not given to the template: the route constrains the reply with the
    // schema's own grammar (the template's version starts with the generation prompt).

    if (!hasChatLayer(model)) return legacyPrompt(model, messages, tools, req.template);
    const { templates: t, stops } = await templatesOf(model, req.template);
    const rendered = await t.render({ messages, tools, toolChoice: mode, addGenerationPrompt: true, parallelToolCalls: req.parallelToolCalls ?? false });
    const tokens = await t.tokenize(rendered);
    const out: ChatPrompt = {
        tokens,
        stops: [...rendered.additionalStops, ...stops],
        parse: (raw, partial) => t.parse(raw, rendered, { partial }),
        plain: !tools && !rendered.supportsThinking && rendered.parser === "",
    };
    if (rendered.grammar) {
        out.grammar = rendered.grammarLazy ? rendered.grammar : dropPrefill(rendered.grammar, rendered.generationPrompt);
        if (rendered.grammarLazy) {
            out.grammarTriggers = {
                patterns: rendered.grammarTriggers.filter((g) => g.type !== "token").map(triggerPattern),
                tokens: rendered.grammarTriggers.filter((g) => g.type === "token").map((g) => g.token),
            };
        }
    }
    return out;
}

/** The older, text-only chat API: llama.cpp's built-in templates, no tools. */
async function legacyPrompt(model: Model, messages: Record<string, unknown>[], tools: ToolIn[] | undefined, template: string | undefined): Promise<ChatPrompt> {
    if (tools) throw new ApiError(400, "tools are not supported by this build (no chat-template engine)", { param: "tools", code: "unsupported_parameter" });
    if (messages.some((m) => m.tool_calls)) throw badRequest("messages", "tool calls are not supported by this build", "unsupported_value");
    const apply = (model as unknown as { applyChatTemplate(m: unknown, o: unknown): string }).applyChatTemplate.bind(model);
    const plainMessages = messages.map((m) => ({ role: m.role, content: m.content }));
    let prompt: string;
    let stops: string[] = [];
    try {
        prompt = apply(plainMessages, { addAssistant: true, ...(template !== undefined ? { template } : {}) });
    } catch {
        prompt = apply(plainMessages, { addAssistant: true, template: "chatml" });
        stops = ["<|im_end|>"];
    }
    const tokens = await model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
    return { tokens, stops, parse: null, plain: true };
}
