// Saved context state: llamafuse's header (which model and cache type made it), then the
// native blob (llama.cpp's state plus each sequence's next-token logits). The header is
// checked before llama.cpp reads anything, so a state from another model is refused
// cleanly instead of being fed to llama.cpp's reader.
import { readFile, writeFile } from "node:fs/promises";
import { crc32 } from "node:zlib";
import type { Context } from "./context.js";
import { LlamaError } from "./errors.js";
import { checkKnownKeys, invalidOption, is, optionsObject } from "./validate.js";

export interface StateOptions {
    /** Save or load one sequence instead of the whole context. */
    sequence?: number;
}

const MAGIC = "LLAMAFUSE-STATE\n";
// Version 2 adds the payload's length and CRC-32: a state cut short, padded or bit-flipped is
// refused here, before llama.cpp's reader sees it (with version 1, 477 of 500 single-bit flips
// loaded without error).
const VERSION = 2;

interface StateHeader {
    version: number;
    kind: "context" | "sequence";
    model: string;
    kvType: string;
    /** Bytes of the native blob after the header. */
    length: number;
    /** CRC-32 (zlib's) of those bytes. */
    crc32: number;
}

function mismatch(message: string): LlamaError {
    return new LlamaError("ERR_STATE_MISMATCH", message);
}

/** The header as parsed JSON, checked field by field (any JSON can sit there in a corrupt file). */
function checkHeader(h: unknown): StateHeader {
    if (!is.object(h)) throw mismatch("not a llamafuse state (its header is not an object)");
    const o = h as Record<string, unknown>;
    if (o.version !== VERSION) throw mismatch(`state version ${String(o.version)} is not supported (expected ${VERSION})`);
    if (o.kind !== "context" && o.kind !== "sequence") throw mismatch("not a llamafuse state (its header has no valid kind)");
    if (!is.string(o.model) || !is.string(o.kvType)) throw mismatch("not a llamafuse state (its header lacks the model or the cache type)");
    if (!is.integer(o.length) || (o.length as number) < 0 || !is.integer(o.crc32)) throw mismatch("not a llamafuse state (its header lacks the payload length or checksum)");
    return o as unknown as StateHeader;
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
    const header: StateHeader = {
        version: VERSION, kind: seq < 0 ? "context" : "sequence", model: modelFingerprint(ctx), kvType: ctx.kvType,
        length: blob.length, crc32: crc32(blob),
    };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    const out = Buffer.concat([Buffer.from(MAGIC), len, json, blob]);
    if (target === undefined) return out;
    try {
        await writeFile(target as string, out);
    } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === "ENOENT" ? "its folder does not exist" : code === "EISDIR" ? "it is a directory" : (err as Error).message;
        throw new LlamaError(code === "ENOENT" ? "ERR_FILE_NOT_FOUND" : "ERR_INVALID_OPTION", `cannot write state file ${target as string}: ${why}`, { cause: err });
    }
    return undefined;
}

/**
 * A saved state's bytes: read from a file path, or copied from a Buffer/Uint8Array now (the
 * caller may reuse its buffer while the load waits in a queue). `what` names it in errors.
 */
export async function readStateSource(source: unknown, what: string): Promise<Uint8Array> {
    if (is.string(source)) {
        try {
            return await readFile(source);
        } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            throw new LlamaError(code === "ENOENT" ? "ERR_FILE_NOT_FOUND" : "ERR_STATE_MISMATCH", `cannot read ${what} file ${source}: ${(err as Error).message}`);
        }
    }
    if (source instanceof Uint8Array) return Uint8Array.prototype.slice.call(source);
    throw invalidOption("source", "a file path or a Buffer/Uint8Array", source);
}

export async function loadStateBlob(ctx: Context, source: unknown, options: unknown): Promise<void> {
    const seq = stateOptions(ctx, options);
    const data = await readStateSource(source, "state");
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length < MAGIC.length + 4 || buf.toString("latin1", 0, MAGIC.length) !== MAGIC) {
        throw new LlamaError("ERR_STATE_MISMATCH", "not a llamafuse state (bad header)");
    }
    const jsonLen = buf.readUInt32LE(MAGIC.length);
    if (MAGIC.length + 4 + jsonLen > buf.length) throw mismatch("not a llamafuse state (its header runs past the end)");
    let parsed: unknown;
    try {
        parsed = JSON.parse(buf.toString("utf8", MAGIC.length + 4, MAGIC.length + 4 + jsonLen));
    } catch {
        throw mismatch("not a llamafuse state (corrupt header)");
    }
    const header = checkHeader(parsed);
    if (header.model !== modelFingerprint(ctx)) {
        throw new LlamaError("ERR_STATE_MISMATCH", `this state was saved by another model (${header.model.split("|").slice(0, 2).join(" ")}), not ${ctx.model.info.architecture} ${ctx.model.info.name}`);
    }
    if (header.kvType !== ctx.kvType) throw new LlamaError("ERR_STATE_MISMATCH", `this state has a ${header.kvType} KV cache; this context uses ${ctx.kvType}`);
    if ((header.kind === "sequence") !== seq >= 0) {
        throw new LlamaError("ERR_STATE_MISMATCH", header.kind === "sequence" ? "this is one sequence's state: pass { sequence } to load it" : "this is a whole-context state: load it without { sequence }");
    }
    const blob = buf.subarray(MAGIC.length + 4 + jsonLen);
    if (blob.length !== header.length) throw mismatch(`the state is ${blob.length < header.length ? "truncated" : "longer than its header says"} (${blob.length} bytes of payload, expected ${header.length})`);
    if (crc32(blob) !== header.crc32) throw mismatch("the state is corrupt (its checksum does not match)");
    await ctx.enqueue((n) => n.setState(blob, seq));
}
