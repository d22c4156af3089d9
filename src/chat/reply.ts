// A reply as it grows, turned into deltas: text, reasoning, and tool calls (a new call with
// its id, name and arguments so far; then only what its arguments grew by, as OpenAI streams
// them). A plain-text format (no tools, no thinking) passes generate()'s text through;
// otherwise the raw reply (special tokens rendered as text, since parsers look for markers
// such as <tool_call>) is parsed by the template format's parser: after each token while
// streaming, and once at the end. Shared by ChatSession and the server.
import type { Model } from "../model.js";
import type { NativeChatParsed } from "./native.js";

export type ReplyDelta =
    | { reasoning: string }
    | { content: string }
    | { toolCall: { index: number; id?: string; name?: string; arguments: string } };

export class ReplyParser {
    readonly #model: Model;
    readonly #parse: (raw: string, partial: boolean) => Promise<NativeChatParsed>;
    readonly #plain: boolean;
    readonly #decoder = new TextDecoder("utf-8");
    #raw = "";
    #text = "";
    #sent: NativeChatParsed = { content: "", reasoning: "", toolCalls: [] };

    /** plain: the format has no tool calls or reasoning to separate out. */
    constructor(model: Model, parse: (raw: string, partial: boolean) => Promise<NativeChatParsed>, plain: boolean) {
        this.#model = model;
        this.#parse = parse;
        this.#plain = plain;
    }

    /** The deltas a generated step releases (none when not streaming: finish() parses once). */
    async push(step: { token: number; text: string }, streaming: boolean): Promise<ReplyDelta[]> {
        this.#text += step.text;
        if (this.#plain) return streaming && step.text !== "" ? this.#diff({ content: this.#text, reasoning: "", toolCalls: [] }) : [];
        this.#raw += this.#decoder.decode(this.#model.tokenPieces([step.token], { special: true })[0], { stream: true });
        if (!streaming) return [];
        let parsed: NativeChatParsed;
        try {
            parsed = await this.#parse(this.#raw, true);
        } catch {
            return []; // a partial reply need not parse yet
        }
        return this.#diff(parsed);
    }

    /**
     * The final parse, and the deltas not sent yet. A reply that does not parse is plain
     * content unless `strict` (a call was required), where the parser's error is thrown.
     * Calls without an id get one.
     */
    async finish(strict = false): Promise<{ parsed: NativeChatParsed; deltas: ReplyDelta[] }> {
        let parsed: NativeChatParsed = { content: this.#text, reasoning: "", toolCalls: [] };
        if (!this.#plain) {
            this.#raw += this.#decoder.decode();
            try {
                parsed = await this.#parse(this.#raw, false);
            } catch (err) {
                if (strict) throw err;
                parsed = { content: this.#text, reasoning: "", toolCalls: [] }; // not in the format's shape: the text as it is
            }
        }
        parsed = { ...parsed, toolCalls: parsed.toolCalls.map((c, i) => ({ ...c, id: c.id || `call_${Date.now().toString(36)}_${i}` })) };
        return { parsed, deltas: this.#diff(parsed) };
    }

    #diff(p: NativeChatParsed): ReplyDelta[] {
        const prev = this.#sent;
        const out: ReplyDelta[] = [];
        if (p.reasoning.length > prev.reasoning.length && p.reasoning.startsWith(prev.reasoning)) out.push({ reasoning: p.reasoning.slice(prev.reasoning.length) });
        if (p.content.length > prev.content.length && p.content.startsWith(prev.content)) out.push({ content: p.content.slice(prev.content.length) });
        p.toolCalls.forEach((c, index) => {
            const before = prev.toolCalls[index];
            if (!before) out.push({ toolCall: { index, id: c.id, name: c.name, arguments: c.arguments } });
            else if (c.arguments.length > before.arguments.length && c.arguments.startsWith(before.arguments)) {
                out.push({ toolCall: { index, arguments: c.arguments.slice(before.arguments.length) } });
            }
        });
        // Keep only what grew, so that a partial parse that backtracks is not sent twice.
        this.#sent = {
            content: p.content.startsWith(prev.content) ? p.content : prev.content,
            reasoning: p.reasoning.startsWith(prev.reasoning) ? p.reasoning : prev.reasoning,
            toolCalls: p.toolCalls.map((c, i) => (prev.toolCalls[i] && !c.arguments.startsWith(prev.toolCalls[i]!.arguments) ? prev.toolCalls[i]! : c)),
        };
        return out;
    }
}
