// Chat messages in the OpenAI chat shape, checked once here so that the server, the `openai`
// client's types and a ChatSession's history all pass through unchanged.
import { LlamaError } from "../errors.js";
import { invalidOption, is } from "../validate.js";

export type ChatRole = "system" | "developer" | "user" | "assistant" | "tool";

export interface ChatToolCall {
    id?: string;
    type?: "function";
    /** arguments: a JSON string (as OpenAI sends it) or the object itself. */
    function: { name: string; arguments: string | Record<string, unknown> };
}

export interface ChatContentPart {
    type: "text";
    text: string;
}

export interface ChatMessage {
    role: ChatRole | (string & {});
    content?: string | ChatContentPart[] | null;
    name?: string;
    tool_calls?: ChatToolCall[];
    tool_call_id?: string;
    /** A reasoning model's thoughts on an assistant turn (what went between <think> tags). */
    reasoning_content?: string;
}

/** An OpenAI-style function tool: a JSON-schema description of one function. */
export interface ChatTool {
    type: "function";
    function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export type ToolChoice = "auto" | "none" | "required" | { type?: "function"; name?: string; function?: { name: string } };

const MESSAGE_KEYS = new Set(["role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"]);

/**
 * Checks messages and returns copies in the form llama.cpp's parser takes: tool-call
 * arguments as JSON strings, content as a string or text parts.
 */
export function normalizeMessages(messages: unknown): ChatMessage[] {
    if (!Array.isArray(messages)) throw invalidOption("messages", "an array of chat messages", messages);
    return messages.map((m, i) => normalizeMessage(m, `messages[${i}]`));
}

export function normalizeMessage(m: unknown, name: string): ChatMessage {
    if (!is.object(m)) throw invalidOption(name, "a chat message object { role, content }", m);
    for (const k of Object.keys(m)) {
        if (!MESSAGE_KEYS.has(k)) throw invalidOption(`${name}.${k}`, `one of ${[...MESSAGE_KEYS].join(", ")}`, k);
    }
    if (!is.string(m.role) || m.role.length === 0) throw invalidOption(`${name}.role`, "a non-empty string", m.role);
    const out: ChatMessage = { role: m.role };
    const content = m.content;
    if (is.string(content) || content === null) out.content = content;
    else if (Array.isArray(content)) {
        out.content = content.map((p, j) => {
            if (!is.object(p) || p.type !== "text" || !is.string(p.text)) {
                throw invalidOption(`${name}.content[${j}]`, 'a text part { type: "text", text }', p);
            }
            return { type: "text", text: p.text };
        });
    } else if (content !== undefined) throw invalidOption(`${name}.content`, "a string, null or an array of text parts", content);
    for (const k of ["name", "tool_call_id", "reasoning_content"] as const) {
        if (m[k] === undefined) continue;
        if (!is.string(m[k])) throw invalidOption(`${name}.${k}`, "a string", m[k]);
        out[k] = m[k] as string;
    }
    if (m.tool_calls !== undefined) {
        if (!Array.isArray(m.tool_calls)) throw invalidOption(`${name}.tool_calls`, "an array", m.tool_calls);
        out.tool_calls = m.tool_calls.map((c, j) => normalizeToolCall(c, `${name}.tool_calls[${j}]`));
    }
    if (out.content === undefined && out.tool_calls === undefined) {
        throw invalidOption(`${name}.content`, "a string (a message needs content or tool_calls)", undefined);
    }
    return out;
}

function normalizeToolCall(c: unknown, name: string): ChatToolCall {
    if (!is.object(c) || !is.object(c.function)) throw invalidOption(name, "a tool call { id, type: \"function\", function: { name, arguments } }", c);
    const fn = c.function;
    if (!is.string(fn.name) || fn.name.length === 0) throw invalidOption(`${name}.function.name`, "a non-empty string", fn.name);
    let args: string;
    if (is.string(fn.arguments)) args = fn.arguments;
    else if (is.object(fn.arguments)) args = JSON.stringify(fn.arguments);
    else throw invalidOption(`${name}.function.arguments`, "a JSON string or an object", fn.arguments);
    if (c.id !== undefined && !is.string(c.id)) throw invalidOption(`${name}.id`, "a string", c.id);
    return { ...(c.id !== undefined ? { id: c.id as string } : {}), type: "function", function: { name: fn.name, arguments: args } };
}

export function normalizeTools(tools: unknown): ChatTool[] | undefined {
    if (tools === undefined || tools === null) return undefined;
    if (!Array.isArray(tools)) throw invalidOption("tools", "an array of function tools", tools);
    const names = new Set<string>();
    return tools.map((t, i) => {
        const name = `tools[${i}]`;
        if (!is.object(t) || t.type !== "function" || !is.object(t.function)) {
            throw invalidOption(name, 'a tool { type: "function", function: { name, description?, parameters? } }', t);
        }
        const fn = t.function;
        if (!is.string(fn.name) || !/^[A-Za-z0-9_.-]{1,64}$/.test(fn.name)) {
            throw invalidOption(`${name}.function.name`, "a name of 1 to 64 letters, digits, _ . or -", fn.name);
        }
        if (names.has(fn.name)) throw invalidOption(`${name}.function.name`, "a name no other tool has", fn.name);
        names.add(fn.name);
        if (fn.description !== undefined && !is.string(fn.description)) throw invalidOption(`${name}.function.description`, "a string", fn.description);
        if (fn.parameters !== undefined && !is.object(fn.parameters)) throw invalidOption(`${name}.function.parameters`, "a JSON schema object", fn.parameters);
        return {
            type: "function",
            function: {
                name: fn.name,
                ...(fn.description !== undefined ? { description: fn.description as string } : {}),
                parameters: (fn.parameters as Record<string, unknown> | undefined) ?? { type: "object", properties: {} },
            },
        };
    });
}

/** The tool choice as llama.cpp takes it, plus the one forced function when there is one. */
export function resolveToolChoice(choice: unknown, tools: ChatTool[] | undefined): { mode: "auto" | "none" | "required"; forced: string | null } {
    if (choice === undefined) return { mode: "auto", forced: null };
    if (choice === "auto" || choice === "none" || choice === "required") {
        if (choice === "required" && !tools?.length) throw new LlamaError("ERR_INVALID_OPTION", 'toolChoice "required" needs at least one tool');
        return { mode: choice, forced: null };
    }
    if (is.object(choice)) {
        const fname = is.object(choice.function) ? choice.function.name : choice.name;
        if (!is.string(fname)) throw invalidOption("toolChoice", '"auto", "none", "required" or { name }', choice);
        if (!tools?.some((t) => t.function.name === fname)) throw invalidOption("toolChoice.name", "the name of one of the tools", fname);
        return { mode: "required", forced: fname };
    }
    throw invalidOption("toolChoice", '"auto", "none", "required" or { name }', choice);
}

/** The message's text content (text parts joined), or "" when it has none. */
export function messageText(m: ChatMessage): string {
    if (is.string(m.content)) return m.content;
    if (Array.isArray(m.content)) return m.content.map((p) => p.text).join("");
    return "";
}
