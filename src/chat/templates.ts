// ChatTemplates: one model's chat template, compiled once by llama.cpp's common/chat, and
// the three things done with it: render messages (with the grammar and parser the format
// needs for tool calls), tokenize the rendering so that message text never becomes control
// tokens, and parse a reply into content, reasoning and tool calls.
import { binding } from "../binding.js";
import { LlamaError, callNative, fromNative } from "../errors.js";
import type { Model } from "../model.js";
import { SYNC_TOKENIZE_MAX_BYTES } from "../tokens.js";
import { is } from "../validate.js";
import type { ChatMessage, ChatTool } from "./messages.js";
import type { NativeChatParsed, NativeChatRender, NativeChatTemplates } from "./native.js";

/** parseSync's limits (native/chat_templates.cpp): longer replies or parsers go to a worker. */
const SYNC_PARSE_MAX_TEXT_BYTES = 1024;
const SYNC_PARSE_MAX_PARAMS_BYTES = 16384;

export interface RenderRequest {
    messages: ChatMessage[];
    tools?: ChatTool[];
    toolChoice?: "auto" | "none" | "required";
    addGenerationPrompt?: boolean;
    /** Constrain the reply to this JSON schema (a grammar comes back in the render). */
    jsonSchema?: unknown;
    parallelToolCalls?: boolean;
    /** Reasoning models: let the model think (templates that support switching it off). @default true */
    enableThinking?: boolean;
    /** Extra variables for the template (chat_template_kwargs). */
    kwargs?: Record<string, unknown>;
    /** The time strftime_now() renders. @default Date.now() */
    now?: number;
}

/**
 * A conversation's last tokenization, kept by its session so that the next turn tokenizes
 * only what follows the last control token before the first change (see ChatTemplates.tokenize).
 */
export interface PromptTokenCache {
    last?: { text: string; tokens: Int32Array; /** where each control token starts in the text */ starts: number[]; /** tokens before it */ counts: number[] };
    /** Tokens the last call took from the one before instead of tokenizing them. */
    reused?: number;
}

export interface RenderedChat extends NativeChatRender {
    /** The prompt as segments: template text (may hold control tokens) and message text (never does). */
    segments: string[];
    plain: boolean[];
}

/** How a template option is resolved against the model. */
export type TemplateSpec = { kind: "model" } | { kind: "variant"; name: string } | { kind: "builtin"; name: string } | { kind: "jinja"; source: string };

export function resolveTemplateSpec(model: Model, template: string | undefined): TemplateSpec {
    if (template === undefined) return { kind: "model" };
    if (!is.string(template) || template.length === 0) throw new LlamaError("ERR_INVALID_OPTION", `Expected a template name or Jinja source for template but received ${String(template)}`);
    if (is.string(model.info.metadata[`tokenizer.chat_template.${template}`])) return { kind: "variant", name: template };
    if (!template.includes("{") && binding().chatBuiltinTemplates().includes(template)) return { kind: "builtin", name: template };
    if (!template.includes("{")) {
        throw new LlamaError("ERR_NO_CHAT_TEMPLATE", `"${template}" is neither a chat template variant of this model, a llama.cpp built-in template name (${binding().chatBuiltinTemplates().join(", ")}) nor Jinja source`);
    }
    return { kind: "jinja", source: template };
}

// Private-use characters (plane 15) with a per-process nonce: text no template produces.
const NONCE = Math.random().toString(36).slice(2, 10);
const SENTINEL_OPEN = `\u{FFF70}${NONCE}#`;
const SENTINEL_CLOSE = "\u{FFF71}";
const SENTINEL_RE = new RegExp(`${SENTINEL_OPEN}(\\d+)${SENTINEL_CLOSE}`, "gu");

export class ChatTemplates {
    readonly #native: NativeChatTemplates;
    readonly #model: Model;
    #control: ControlTextIndex | null = null;
    #controlIds: Map<number, string> | null | undefined;

    private constructor(native: NativeChatTemplates, model: Model) {
        this.#native = native;
        this.#model = model;
    }

    static async create(model: Model, spec: TemplateSpec): Promise<ChatTemplates> {
        let source = "";
        let builtin = false;
        if (spec.kind === "model") {
            const own = model.info.metadata["tokenizer.chat_template"];
            if (!is.string(own) || own === "") {
                throw new LlamaError("ERR_NO_CHAT_TEMPLATE", 'the model has no chat template (tokenizer.chat_template): pass one as { template: "<jinja source>" } or a llama.cpp built-in name such as "chatml"');
            }
            source = own;
        } else if (spec.kind === "variant") source = model.info.metadata[`tokenizer.chat_template.${spec.name}`] as string;
        else if (spec.kind === "builtin") {
            source = spec.name;
            builtin = true;
        } else source = spec.source;
        const nativeModel = model.native;
        const native = await model.track(callNative(() => binding().NativeChatTemplates.create(nativeModel, { source, builtin })));
        return new ChatTemplates(native, model);
    }

    /** The Jinja source in use (a built-in template's name for a built-in one). */
    get source(): string {
        return this.#native.source();
    }

    /** What llama.cpp's engine found the template to support (system role, tools, ...). */
    get caps(): Record<string, boolean> {
        return this.#native.caps();
    }

    /** Renders with llama.cpp's engine: the prompt and everything that goes with its format. */
    async apply(req: RenderRequest): Promise<NativeChatRender> {
        const json = JSON.stringify({
            messages: req.messages,
            tools: req.tools?.length ? req.tools : undefined,
            toolChoice: req.toolChoice ?? "auto",
            addGenerationPrompt: req.addGenerationPrompt ?? true,
            jsonSchema: req.jsonSchema,
            parallelToolCalls: req.parallelToolCalls ?? false,
            enableThinking: req.enableThinking ?? true,
            kwargs: req.kwargs,
            nowMs: req.now ?? Date.now(),
        });
        return JSON.parse(await this.#model.track(callNative(() => this.#native.apply(json)))) as NativeChatRender;
    }

    /**
     * Renders and splits the prompt into template text and message text. When no message
     * string holds control-token text, or could complete one with the template text beside
     * it, tokenizing the whole rendering as template text gives the same tokens, and one
     * render is enough. Otherwise message strings are rendered once more as sentinels to find
     * where each lands; the split is accepted only when putting the real strings back (as
     * given, or trimmed as many templates do) gives exactly the real rendering. When it is
     * not, and a message holds control-token text, this throws rather than let it through.
     */
    async render(req: RenderRequest): Promise<RenderedChat> {
        const index = this.#controlIndex();
        const strings: string[] = [];
        for (const m of req.messages) {
            if (is.string(m.content)) strings.push(m.content);
            else if (Array.isArray(m.content)) strings.push(...m.content.map((p) => p.text));
            if (m.reasoning_content !== undefined) strings.push(m.reasoning_content);
        }
        if (!strings.some((x) => index.touches(x))) {
            const real = await this.apply(req);
            return { ...real, segments: [real.prompt], plain: [false] };
        }
        let n = 0;
        const mark = (): string => `${SENTINEL_OPEN}${n++}${SENTINEL_CLOSE}`;
        const marked = req.messages.map((m) => ({
            ...m,
            ...(is.string(m.content) ? { content: mark() } : {}),
            ...(Array.isArray(m.content) ? { content: m.content.map(() => ({ type: "text" as const, text: mark() })) } : {}),
            ...(m.reasoning_content !== undefined ? { reasoning_content: mark() } : {}),
        }));
        const [real, sentinel] = await Promise.all([this.apply(req), this.apply({ ...req, messages: marked })]);
        const split = alignSegments(real.prompt, sentinel.prompt, strings);
        if (split) return { ...real, ...split };
        if (strings.some((x) => index.contains(x))) {
            throw new LlamaError("ERR_UNSAFE_PROMPT", "a message holds control-token text and this template transforms message text in a way that hides where it lands, so it cannot be kept out of the control tokens");
        }
        return { ...real, segments: [real.prompt], plain: [false] };
    }

    /**
     * Tokens of rendered segments: control tokens only from template text.
     *
     * With a session's `cache`, a prompt rendered whole (no message text that needs keeping
     * apart) reuses the previous turn's tokens before a control token and tokenizes only the
     * rest, from that control token on. That gives the same tokens as tokenizing it all:
     * llama.cpp splits text at special tokens first and tokenizes each piece between them on
     * its own (BPE and SentencePiece vocabularies; SentencePiece's space prefix goes on a piece
     * after a special token, as on a first piece), and a control token's lstrip/rstrip act on
     * whitespace inside the piece before it (tokenized the same way last time) or inside the
     * part tokenized now. The control token starts at least one control token's length before
     * the first changed character, so no special token can straddle the change. On a 2K-token
     * conversation this takes tokenization from ~3.4 ms to the new turn's share.
     */
    async tokenize(rendered: Pick<RenderedChat, "segments" | "plain">, addSpecial = true, cache?: PromptTokenCache): Promise<Int32Array> {
        const nativeModel = this.#model.native;
        const run = async (segments: string[], plain: boolean[], special: boolean): Promise<Int32Array> => {
            // The part of a prompt that changed since the last turn is usually short: tokenized
            // on this thread, without a worker round trip (UTF-8 is at most 3 bytes per unit).
            if (segments.reduce((n, x) => n + x.length, 0) * 3 <= SYNC_TOKENIZE_MAX_BYTES) {
                try {
                    return this.#native.tokenizeSegmentsSync(nativeModel, segments, plain, special);
                } catch (err) {
                    throw fromNative(err);
                }
            }
            return this.#model.track(callNative(() => this.#native.tokenizeSegments(nativeModel, segments, plain, special)));
        };
        const controlIds = cache && addSpecial && rendered.segments.length === 1 && !rendered.plain[0] ? this.#incrementalControlIds() : null;
        if (cache) cache.reused = 0;
        if (!cache || !controlIds) {
            if (cache) cache.last = undefined;
            return run(rendered.segments, rendered.plain, addSpecial);
        }
        const text = rendered.segments[0]!;
        const prev = cache.last;
        let from = 0, reused = 0, starts: number[] = [], counts: number[] = [];
        if (prev) {
            const limit = commonPrefixLength(prev.text, text) - this.#controlIndex().maxLength;
            let j = prev.starts.length - 1;
            while (j >= 0 && prev.starts[j]! > limit) j--;
            if (j >= 0 && prev.starts[j]! > 0) {
                from = prev.starts[j]!;
                reused = prev.counts[j]!;
                starts = prev.starts.slice(0, j); // the one at `from` is found again below
                counts = prev.counts.slice(0, j);
            }
        }
        const rest = from < text.length ? await run([text.slice(from)], [false], from === 0) : new Int32Array(0);
        const tokens = new Int32Array(reused + rest.length);
        if (prev) tokens.set(prev.tokens.subarray(0, reused));
        tokens.set(rest, reused);
        // Where each control token of the new part starts in the text, for the next turn.
        let pos = from;
        for (let i = 0; i < rest.length; i++) {
            const t = controlIds.get(rest[i]!);
            if (t === undefined) continue;
            const at = text.indexOf(t, pos);
            if (at < 0) {
                cache.last = undefined; // not where expected: the next turn tokenizes everything
                return tokens;
            }
            starts.push(at);
            counts.push(reused + i);
            pos = at + t.length;
        }
        cache.last = { text, tokens, starts, counts };
        cache.reused = reused;
        return tokens;
    }

    /**
     * Control token ids and texts, when prompts may be tokenized in parts (see tokenize):
     * BPE and SentencePiece vocabularies that add no EOS. Null otherwise.
     */
    #incrementalControlIds(): Map<number, string> | null {
        if (this.#controlIds !== undefined) return this.#controlIds;
        const info = this.#model.info;
        if ((info.vocabType !== "bpe" && info.vocabType !== "spm") || info.metadata["tokenizer.ggml.add_eos_token"] === true) return (this.#controlIds = null);
        const ids = new Map<number, string>();
        for (const text of this.#native.controlTokenTexts()) {
            const t = this.#model.tokenizeSync(text, { addSpecial: false, parseSpecial: true });
            if (t.length === 1) ids.set(t[0]!, text);
        }
        return (this.#controlIds = ids);
    }

    /** Parses a reply with the format's own parser (partial: the reply may still grow). */
    async parse(text: string, render: NativeChatRender, options: { partial?: boolean; parseToolCalls?: boolean; parseReasoning?: boolean } = {}): Promise<NativeChatParsed> {
        const params = parserParams(render, options.parseToolCalls ?? true, options.parseReasoning ?? true);
        // A short reply with a small parser (every streamed reply starts as one) is parsed on
        // this thread: a worker round trip costs more than the parse. UTF-8 is at most 3
        // bytes per UTF-16 unit, so the lengths bound the native limits without counting.
        if (text.length * 3 <= SYNC_PARSE_MAX_TEXT_BYTES && params.length * 3 <= SYNC_PARSE_MAX_PARAMS_BYTES) {
            try {
                return JSON.parse(this.#native.parseSync(text, options.partial ?? false, params)) as NativeChatParsed;
            } catch (err) {
                throw fromNative(err);
            }
        }
        return JSON.parse(await this.#model.track(callNative(() => this.#native.parse(text, options.partial ?? false, params)))) as NativeChatParsed;
    }

    #controlIndex(): ControlTextIndex {
        return (this.#control ??= new ControlTextIndex(this.#native.controlTokenTexts()));
    }

    dispose(): void {
        this.#native.dispose();
    }
}

// The parser's parameters as parse() sends them, made once per render: a streamed reply is
// parsed after every token, and with tools the parser alone is ~15 KB of JSON.
const paramsByRender = new WeakMap<NativeChatRender, Map<string, string>>();

function parserParams(render: NativeChatRender, parseToolCalls: boolean, parseReasoning: boolean): string {
    let byFlags = paramsByRender.get(render);
    if (!byFlags) paramsByRender.set(render, (byFlags = new Map()));
    const key = `${parseToolCalls ? 1 : 0}${parseReasoning ? 1 : 0}`;
    let params = byFlags.get(key);
    if (params === undefined) {
        params = JSON.stringify({ format: render.format, generationPrompt: render.generationPrompt, parser: render.parser, parseToolCalls, parseReasoning });
        byFlags.set(key, params);
    }
    return params;
}

/** touches() remembers its answers for strings of this many UTF-16 units in all, then starts over. */
const TOUCHED_MEMO_CHARS = 1 << 20;

/** The vocabulary's control-token texts, for asking whether a message string could produce one. */
export class ControlTextIndex {
    readonly #byFirst = new Map<string, string[]>();
    readonly #prefixes = new Set<string>();
    readonly #suffixes = new Set<string>();
    readonly #maxLength: number;
    /** touches()'s answers so far, and the length of the strings they are for. */
    readonly #touched = new Map<string, boolean>();
    #touchedChars = 0;

    /** The longest control token's text, in UTF-16 units. */
    get maxLength(): number {
        return this.#maxLength;
    }

    constructor(texts: string[]) {
        let max = 0;
        for (const t of texts) {
            max = Math.max(max, t.length);
            const list = this.#byFirst.get(t[0]!) ?? [];
            list.push(t);
            this.#byFirst.set(t[0]!, list);
            for (let k = 1; k < t.length; k++) {
                this.#prefixes.add(t.slice(0, k));
                this.#suffixes.add(t.slice(t.length - k));
            }
        }
        this.#maxLength = max;
    }

    /** s holds a control token's text. */
    contains(s: string): boolean {
        for (let i = 0; i < s.length; i++) {
            const list = this.#byFirst.get(s[i]!);
            if (list?.some((t) => s.startsWith(t, i))) return true;
        }
        return false;
    }

    /** s holds one, or ends with the start of one, or starts with the end of one (it could complete one with adjacent text). */
    touches(s: string): boolean {
        // A conversation's earlier messages come back every turn: their answers are kept.
        const known = this.#touched.get(s);
        if (known !== undefined) return known;
        const r = this.#touches(s);
        if (s.length <= TOUCHED_MEMO_CHARS) {
            if (this.#touchedChars + s.length > TOUCHED_MEMO_CHARS) {
                this.#touched.clear();
                this.#touchedChars = 0;
            }
            this.#touched.set(s, r);
            this.#touchedChars += s.length;
        }
        return r;
    }

    #touches(s: string): boolean {
        if (this.contains(s)) return true;
        for (let k = 1; k < Math.min(this.#maxLength, s.length + 1); k++) {
            if (this.#prefixes.has(s.slice(s.length - k)) || this.#suffixes.has(s.slice(0, k))) return true;
        }
        return false;
    }
}

function commonPrefixLength(a: string, b: string): number {
    const n = Math.min(a.length, b.length);
    let i = 0;
    while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
    return i;
}

/**
 * Splits `real` into template and message segments using the sentinel rendering, or returns
 * null when the real strings cannot be put back to reproduce `real` exactly.
 */
export function alignSegments(real: string, sentinel: string, strings: string[]): { segments: string[]; plain: boolean[] } | null {
    const parts = sentinel.split(SENTINEL_RE); // [tmpl, id, tmpl, id, ..., tmpl]
    const segments: string[] = [];
    const plain: boolean[] = [];
    let pos = 0;
    const pushTemplate = (t: string): boolean => {
        if (!real.startsWith(t, pos)) return false;
        if (t.length > 0) {
            segments.push(t);
            plain.push(false);
        }
        pos += t.length;
        return true;
    };
    if (!pushTemplate(parts[0]!)) return null;
    for (let k = 1; k < parts.length; k += 2) {
        const s = strings[Number(parts[k])];
        if (s === undefined) return null;
        const next = parts[k + 1]!;
        // Templates often trim message text; try the string as given first.
        const candidates = [s, s.trim(), s.trimStart(), s.trimEnd()];
        const c = candidates.find((v) => real.startsWith(v, pos) && real.startsWith(next, pos + v.length));
        if (c === undefined) return null;
        if (c.length > 0) {
            segments.push(c);
            plain.push(true);
        }
        pos += c.length;
        if (!pushTemplate(next)) return null;
    }
    return pos === real.length ? { segments, plain } : null;
}
