// The native chat surface (native/chat_templates.cpp): llama.cpp's common/chat behind it.
import type { NativeModel } from "../binding.js";

/** What common_chat_templates_apply returns, as native/chat_templates.cpp serialises it. */
export interface NativeChatRender {
    prompt: string;
    /** common_chat_format as a number (the parser needs it back). */
    format: number;
    formatName: string;
    /** GBNF for tool calls or a JSON schema ("" when none). */
    grammar: string;
    /** The grammar applies only once a trigger has appeared. */
    grammarLazy: boolean;
    grammarTriggers: { type: "token" | "word" | "pattern" | "patternFull"; value: string; token: number }[];
    /** Special tokens that must come out as text so the parser can see them. */
    preservedTokens: string[];
    additionalStops: string[];
    /** The text the template puts after the last message (parsers start from it). */
    generationPrompt: string;
    /** The format's PEG parser, serialised. */
    parser: string;
    supportsThinking: boolean;
    thinkingStartTag: string;
    thinkingEndTags: string[];
}

export interface NativeChatParsed {
    content: string;
    reasoning: string;
    toolCalls: { id: string; name: string; arguments: string }[];
}

export interface NativeChatTemplates {
    apply(requestJson: string): Promise<string>;
    parse(text: string, partial: boolean, paramsJson: string): Promise<string>;
    /** parse() on the calling thread, for at most 1024 bytes of reply and 16384 of parameters. */
    parseSync(text: string, partial: boolean, paramsJson: string): string;
    tokenizeSegments(model: NativeModel, segments: string[], plain: boolean[], addSpecial: boolean): Promise<Int32Array>;
    /** tokenizeSegments() on the calling thread, for at most 4096 UTF-8 bytes in all. */
    tokenizeSegmentsSync(model: NativeModel, segments: string[], plain: boolean[], addSpecial: boolean): Int32Array;
    source(variant?: string): string;
    caps(): Record<string, boolean>;
    controlTokenTexts(): string[];
    dispose(): void;
}

export interface NativeChatBinding {
    NativeChatTemplates: {
        create(model: NativeModel, o: { source: string; builtin: boolean }): Promise<NativeChatTemplates>;
    };
    /** llama.cpp's built-in (non-Jinja) template names. */
    chatBuiltinTemplates(): string[];
    /** common/json-schema-to-grammar: JSON schema text to GBNF; throws ERR_INVALID_OPTION. */
    jsonSchemaToGrammar(schemaJson: string): string;
}
