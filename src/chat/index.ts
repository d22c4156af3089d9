// The chat layer on a Model: render with the model's own template, tokenize exactly what a
// session evaluates, and open sessions. The Model methods of the same names delegate here.
import type { ContextOptions } from "../context.js";
import { LlamaError } from "../errors.js";
import type { Model } from "../model.js";
import { checkKnownKeys, optBool, optionsObject } from "../validate.js";
import { normalizeMessages, normalizeTools, resolveToolChoice, type ChatMessage, type ChatTool, type ToolChoice } from "./messages.js";
import { ChatSession, type ChatSessionOptions } from "./session.js";
import { ChatTemplates, resolveTemplateSpec } from "./templates.js";

export interface ApplyChatTemplateOptions {
    /** End with the template's opening of an assistant turn. @default true */
    addGenerationPrompt?: boolean;
    /** Tools to describe to the model (OpenAI function tools). */
    tools?: ChatTool[];
    /** @default "auto" */
    toolChoice?: ToolChoice;
    /** Jinja source, a GGUF template variant name (e.g. "tool_use") or a llama.cpp built-in name. @default the model's own */
    template?: string;
    /** Let reasoning models think, for templates that can switch it off. @default true */
    enableThinking?: boolean;
    /** Extra template variables (chat_template_kwargs). */
    kwargs?: Record<string, unknown>;
    /** The time strftime_now() renders (ms since the epoch). @default Date.now() */
    now?: number;
}

const APPLY_KEYS = ["addGenerationPrompt", "tools", "toolChoice", "template", "enableThinking", "kwargs", "now"] as const;

function resolveApply(model: Model, messages: unknown, options: unknown) {
    const o = optionsObject("options", options);
    checkKnownKeys("applyChatTemplate", o, APPLY_KEYS);
    const msgs = normalizeMessages(messages);
    const tools = normalizeTools(o.tools);
    const choice = resolveToolChoice(o.toolChoice, tools);
    if (o.kwargs !== undefined && (typeof o.kwargs !== "object" || o.kwargs === null || Array.isArray(o.kwargs))) {
        throw new LlamaError("ERR_INVALID_OPTION", "Expected an object for kwargs");
    }
    if (o.now !== undefined && !(typeof o.now === "number" && Number.isFinite(o.now))) throw new LlamaError("ERR_INVALID_OPTION", "Expected a time in ms for now");
    return {
        spec: resolveTemplateSpec(model, o.template as string | undefined),
        request: {
            messages: msgs,
            tools: choice.forced ? tools?.filter((t) => t.function.name === choice.forced) : tools,
            toolChoice: choice.mode,
            addGenerationPrompt: optBool(o, "addGenerationPrompt", true),
            enableThinking: optBool(o, "enableThinking", true),
            kwargs: o.kwargs as Record<string, unknown> | undefined,
            now: o.now as number | undefined,
        },
    };
}

/** The prompt text the template renders for `messages` (llama.cpp's Jinja engine). */
export async function applyChatTemplate(model: Model, messages: ChatMessage[], options?: ApplyChatTemplateOptions): Promise<string> {
    const { spec, request } = resolveApply(model, messages, options);
    const t = await model.chatTemplates(spec);
    return (await t.apply(request)).prompt;
}

/**
 * The tokens of the rendered conversation, exactly as a session evaluates them: BOS as the
 * vocabulary asks, control tokens only where the template wrote them, message text always
 * as plain text.
 */
export async function tokenizeChat(model: Model, messages: ChatMessage[], options?: ApplyChatTemplateOptions): Promise<Int32Array> {
    const { spec, request } = resolveApply(model, messages, options);
    const t = await model.chatTemplates(spec);
    return t.tokenize(await t.render(request));
}

export async function createChatSession(model: Model, options?: ChatSessionOptions): Promise<ChatSession> {
    const o = optionsObject("options", options);
    const { context: given, template, ...rest } = o;
    const contextOptions: Record<string, unknown> = {};
    const sessionOptions: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rest)) ((ChatSession.keys as readonly string[]).includes(k) ? sessionOptions : contextOptions)[k] = v;
    if (given !== undefined) {
        const ctx = given as ChatSession["context"];
        if (typeof ctx !== "object" || ctx === null || (ctx as { model?: unknown }).model !== model) {
            throw new LlamaError("ERR_INVALID_OPTION", "context must be a Context of this model");
        }
        if (Object.keys(contextOptions).length > 0) {
            throw new LlamaError("ERR_INVALID_OPTION", `context options (${Object.keys(contextOptions).join(", ")}) cannot be given with an existing context`);
        }
    }
    const templates = await model.chatTemplates(resolveTemplateSpec(model, template as string | undefined));
    const ctx = (given as ChatSession["context"] | undefined) ?? (await model.createContext(contextOptions as ContextOptions));
    try {
        return new ChatSession(model, templates, ctx, given === undefined, sessionOptions);
    } catch (err) {
        if (given === undefined) await ctx.dispose();
        throw err;
    }
}

export { ChatSession, ChatTemplates };
export type { ChatMessage, ChatTool, ToolChoice } from "./messages.js";
export type { ChatDelta, ChatResponse, ChatRunOptions, ChatSendOptions, ChatSessionOptions, ChatStats, ChatStopReason, ChatToolCallResult } from "./session.js";
