// OpenAI chat messages -> prompt tokens, and the generated reply -> content, reasoning and
// tool calls. Both come from the chat layer (src/chat/) over llama.cpp's common/chat: the
// template renders, message text is never tokenized as control tokens, the reply is held
// to the format's grammar (the same constraints a ChatSession uses) and parsed by the
// format's own parser. A model without a template gets ChatML, as llama-server does.
import { replyConstraints } from "../chat/constraints.js";
import type { ChatMessage, ChatTool } from "../chat/messages.js";
import type { ChatTemplates, RenderedChat, TemplateSpec } from "../chat/templates.js";
import type { Model } from "../model.js";
import { badRequest } from "./errors.js";

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

export interface ChatPrompt {
    tokens: Int32Array;
    stops: string[];
    grammar?: string;
    grammarTriggers?: { patterns: string[]; tokens: number[] };
    /** The assistant turn's opening, which a forced grammar starts with and the prompt already holds. */
    grammarPrefix?: number[];
    /** Parses the reply so far (raw: special tokens rendered as text). */
    parse: (raw: string, partial: boolean) => Promise<ParsedReply>;
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
 * The template given to the server (Jinja source or a llama.cpp built-in name), else the
 * model's own, else ChatML (with its end marker as a stop string: a model that never learned
 * ChatML has no token for it).
 */
async function templatesOf(model: Model, template: string | undefined): Promise<{ templates: ChatTemplates; stops: string[] }> {
    if (template !== undefined) {
        const spec: TemplateSpec = template.includes("{") ? { kind: "jinja", source: template } : { kind: "builtin", name: template };
        return { templates: await model.chatTemplates(spec), stops: [] };
    }
    const own = typeof model.info.metadata["tokenizer.chat_template"] === "string";
    if (own) return { templates: await model.chatTemplates({ kind: "model" }), stops: [] };
    return { templates: await model.chatTemplates({ kind: "builtin", name: "chatml" }), stops: ["<|im_end|>"] };
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
    // The JSON schema is not given to the template: the route holds the reply to the schema's
    // own grammar, the same whatever the template.

    const { templates: t, stops } = await templatesOf(model, req.template);
    const rendered: RenderedChat = await t.render({ messages: messages as unknown as ChatMessage[], tools: tools as ChatTool[] | undefined, toolChoice: mode, addGenerationPrompt: true, parallelToolCalls: req.parallelToolCalls ?? false });
    const tokens = await t.tokenize(rendered);
    const constraints = await replyConstraints(model, rendered, { required: mode === "required" });
    return {
        tokens,
        stops: [...rendered.additionalStops, ...stops],
        parse: (raw, partial) => t.parse(raw, rendered, { partial }),
        plain: !tools && !rendered.supportsThinking && rendered.parser === "",
        ...(constraints.grammar ? { grammar: constraints.grammar } : {}),
        ...(constraints.grammarTriggers ? { grammarTriggers: constraints.grammarTriggers } : {}),
        ...(constraints.grammarPrefix ? { grammarPrefix: constraints.grammarPrefix } : {}),
    };
}
