// Saved context state: llamafuse's header (which model and cache type made it), then the
// native blob (llama.cpp's state plus each sequence's next-token logits). The header is
// checked before llama.cpp reads anything, so a state from another model is refused
// cleanly instead of being fed to llama.cpp's reader.
import { readFile, writeFile } from "node:fs/promises";
import type { Context } from "./context.js";
import { LlamaError } from "./errors.js";
import { checkKnownKeys, invalidOption, is, optionsObject } from "./validate.js";

export interface StateOptions {
    /** Save or load one sequence instead of the whole context. */
    sequence?: number;
}

const MAGIC = "LLAMAFUSE-STATE\n";
const VERSION = 1;

interface StateHeader {
    version: number;
    kind: "context" | "sequence";
    model: string;
    kvType: string;
}

function modelFingerprint(ctx: Context): string {
    const i = ctx.model.info;
    return [i.architecture, i.name, i.parameters, i.sizeBytes, i.layers, i.embeddingSize, i.heads, i.headsKv, i.vocabSize].join("|");
}

function stateOptions(ctx: Context, options: unknown): number {
    const o = optionsObject("options", options);
    checkKnownKeys("state", o, ["sequence"]);
    return o.sequence === undefined ? -1 : ctx.checkSequence("sequence", o.sequence);
}

export async function saveStateBlob(ctx: Context, target: unknown, options: unknown): Promise<Buffer | undefined> {
    if (target !== undefined && !(is.string(target) && target.length > 0)) throw invalidOption("target", "a file path or undefined", target);
    const seq = stateOptions(ctx, options);
    const blob = await ctx.enqueue((n) => n.getState(seq));
    const header: StateHeader = { version: VERSION, kind: seq < 0 ? "context" : "sequence", model: modelFingerprint(ctx), kvType: ctx.kvType };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    const out = Buffer.concat([Buffer.from(MAGIC), len, json, blob]);
    if (target === undefined) return out;
    await writeFile(target as string, out);
    return undefined;
}

export async function loadStateBlob(ctx: Context, source: unknown, options: unknown): Promise<void> {
    const seq = stateOptions(ctx, options);
    let data: Uint8Array;
    if (is.string(source)) {
        try {
            data = await readFile(source);
        } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            throw new LlamaError(code === "ENOENT" ? "ERR_FILE_NOT_FOUND" : "ERR_STATE_MISMATCH", `cannot read state file ${source}: ${(err as Error).message}`);
        }
    } else if (source instanceof Uint8Array) {
        data = source;
    } else {
        throw invalidOption("source", "a file path or a Buffer/Uint8Array", source);
    }
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length < MAGIC.length + 4 || buf.toString("latin1", 0, MAGIC.length) !== MAGIC) {
        throw new LlamaError("ERR_STATE_MISMATCH", "not a llamafuse state (bad header)");
    }
    const jsonLen = buf.readUInt32LE(MAGIC.length);
    let header: StateHeader;
    try {
        header = JSON.parse(buf.toString("utf8", MAGIC.length + 4, MAGIC.length + 4 + jsonLen)) as StateHeader;
    } catch {
        throw new LlamaError("ERR_STATE_MISMATCH", "not a llamafuse state (corrupt header)");
    }
    if (header.version !== VERSION) throw new LlamaError("ERR_STATE_MISMATCH", `state version ${header.version} is not supported (expected ${VERSION})`);
    if (header.model !== modelFingerprint(ctx)) {
        throw new LlamaError("ERR_STATE_MISMATCH", `this state was saved by another model (${header.model.split("|").slice(0, 2).join(" ")}), not ${ctx.model.info.architecture} ${ctx.model.info.name}`);
    }
    if (header.kvType !== ctx.kvType) throw new LlamaError("ERR_STATE_MISMATCH", `this state has a ${header.kvType} KV cache; this context uses ${ctx.kvType}`);
    if ((header.kind === "sequence") !== seq >= 0) {
        throw new LlamaError("ERR_STATE_MISMATCH", header.kind === "sequence" ? "this is one sequence's state: pass { sequence } to load it" : "this is a whole-context state: load it without { sequence }");
    }
    const blob = buf.subarray(MAGIC.length + 4 + jsonLen);
    await ctx.enqueue((n) => n.setState(blob, seq));
}
