// `llamafuse info` and `llamafuse tokenize`: what a model file is, and how it splits text.
import type { Command } from "commander";
import { LlamaError } from "../errors.js";
import type { Model } from "../model.js";
import { action, note, openModel } from "./common.js";
import { addModelFlags, loadOptionsFrom, type ModelFlags } from "./options.js";

/** Array values longer than this are shown as their length and first few items. */
const ARRAY_HEAD = 6;
const STRING_MAX = 100;

function short(s: string): string {
    const q = JSON.stringify(s);
    return q.length > STRING_MAX ? `${q.slice(0, STRING_MAX - 3)}..." (${s.length} chars)` : q;
}

/** A metadata value on one line: long arrays summarized, long strings cut. */
export function formatValue(v: unknown): string {
    if (typeof v === "string") return short(v);
    if (typeof v === "bigint") return v.toString();
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
        const items = Array.from(v as ArrayLike<unknown>);
        const head = items.slice(0, ARRAY_HEAD).map((x) => (typeof x === "string" ? short(x) : formatValue(x)));
        return items.length > ARRAY_HEAD ? `[${items.length} items] ${head.join(", ")}, ...` : `[${head.join(", ")}]`;
    }
    // GGUF floats are float32: show the digits they hold, not the float64 expansion.
    if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(7)));
    if (v === null || v === undefined) return String(v);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
}

function table(rows: [string, string][]): string {
    const w = Math.max(...rows.map(([k]) => k.length));
    return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n");
}

function infoRows(model: Model): [string, string][] {
    const { metadata: _m, chatTemplate, ...rest } = model.info;
    const rows: [string, string][] = Object.entries(rest).map(([k, v]) => [k, formatValue(v)]);
    rows.push(["chatTemplate", chatTemplate === null ? "(none: plain completion)" : short(chatTemplate)]);
    return rows;
}

/** JSON for --json: typed arrays become plain arrays, bigints strings. */
function jsonSafe(v: unknown): unknown {
    return JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : x)));
}

/** A piece as readable text: bytes that are not whole UTF-8 characters shown as <0xNN>. */
export function showPiece(bytes: Uint8Array): string {
    try {
        return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
        return Array.from(bytes, (b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`).join("");
    }
}

/**
 * The model for `info`: loaded whole, or, when that fails (a vocabulary-only GGUF such as
 * llama.cpp's ggml-vocab-*.gguf has no weights), its vocabulary and metadata only, saying why.
 */
async function openForInfo(path: string, opts: ModelFlags & { json?: boolean }): Promise<Model> {
    const options = loadOptionsFrom(opts);
    try {
        return await openModel(path, options, !!opts.json);
    } catch (err) {
        if (options.vocabOnly || !(err instanceof LlamaError) || err.code !== "ERR_INVALID_MODEL") throw err;
        const model = await openModel(path, { ...options, vocabOnly: true }, true).catch(() => {
            throw err; // not even its vocabulary loads: the first error says most
        });
        note(`note: showing the vocabulary and metadata only; the model itself did not load (${err.message})`);
        return model;
    }
}

export function registerInspect(program: Command): void {
    addModelFlags(
        program
            .command("info")
            .description("show what a GGUF model is: its properties and every metadata key")
            .argument("<model>", "path to a .gguf file")
            .option("--json", "print JSON instead of tables"),
    ).action(action(async (path: string, opts: ModelFlags & { json?: boolean }) => {
        const model = await openForInfo(path, opts);
        try {
            if (opts.json) {
                process.stdout.write(JSON.stringify(jsonSafe(model.info), null, 2) + "\n");
                return;
            }
            const keys = Object.keys(model.info.metadata).sort();
            const out = [
                `model: ${path}`,
                table(infoRows(model)),
                "",
                `metadata (${keys.length} keys):`,
                table(keys.map((k) => [k, formatValue(model.info.metadata[k])])),
            ];
            process.stdout.write(out.join("\n") + "\n");
        } finally {
            await model.dispose();
        }
    }));

    program
        .command("tokenize")
        .description("split text into the model's tokens: ids and pieces")
        .argument("<model>", "path to a .gguf file (only its vocabulary is loaded)")
        .argument("<text>", "the text to tokenize")
        .option("--no-add-special", "do not add the model's BOS/EOS tokens")
        .option("--parse-special", 'read special-token text such as "<|eot_id|>" as special tokens')
        .option("--json", "print JSON: { tokens, pieces }")
        .action(action(async (path: string, text: string, opts: { addSpecial: boolean; parseSpecial?: boolean; json?: boolean }) => {
            const model = await openModel(path, { vocabOnly: true }, true);
            try {
                const tokens = await model.tokenize(text, { addSpecial: opts.addSpecial, parseSpecial: !!opts.parseSpecial });
                const pieces = model.tokenPieces(tokens).map(showPiece);
                if (opts.json) {
                    process.stdout.write(JSON.stringify({ tokens: Array.from(tokens), pieces }) + "\n");
                    return;
                }
                const w = String(Math.max(0, ...tokens)).length;
                const lines = Array.from(tokens, (t, i) => `${String(i).padStart(String(tokens.length).length)}  ${String(t).padStart(w)}  ${JSON.stringify(pieces[i])}`);
                process.stdout.write([`${tokens.length} tokens`, ...lines, `ids: ${Array.from(tokens).join(" ")}`].join("\n") + "\n");
            } finally {
                await model.dispose();
            }
        }));
}
