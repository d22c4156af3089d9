// Token arrays at the boundary: callers may pass number[], Int32Array or Uint32Array;
// native code gets an Int32Array of ids that are known to be inside the vocabulary
// (llama.cpp would index out of bounds, or assert, on anything else).
import { LlamaError } from "./errors.js";
import { describe } from "./validate.js";

export type TokenInput = ArrayLike<number>;

/** The synchronous tokenizer calls' limits (native/tokenize.h): tokenizeSync, detokenizeSync and the chat prompt's sync path. */
export const SYNC_TOKENIZE_MAX_BYTES = 4096;
export const SYNC_DETOKENIZE_MAX_TOKENS = 1024;

export function toTokenArray(name: string, tokens: unknown, vocabSize: number, allowEmpty = true): Int32Array {
    if (!(Array.isArray(tokens) || tokens instanceof Int32Array || tokens instanceof Uint32Array)) {
        throw new LlamaError("ERR_INVALID_OPTION", `Expected an array of token ids (number[], Int32Array or Uint32Array) for ${name} but received ${describe(tokens)}`);
    }
    if (!allowEmpty && tokens.length === 0) throw new LlamaError("ERR_INVALID_BATCH", `${name} is empty`);
    const out = tokens instanceof Int32Array ? tokens : new Int32Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i] as unknown;
        if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= vocabSize) {
            throw new LlamaError("ERR_INVALID_TOKEN", `${name}[${i}] = ${describe(t)} is not a token id of this model (0 to ${vocabSize - 1})`);
        }
        out[i] = t;
    }
    return out;
}
