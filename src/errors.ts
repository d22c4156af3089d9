/** Stable error codes: every error that leaves llamafuse is a LlamaError with one of these. */
export type ErrorCode =
    | "ERR_FILE_NOT_FOUND"
    | "ERR_INVALID_MODEL"
    | "ERR_INVALID_OPTION"
    | "ERR_INVALID_TOKEN"
    | "ERR_INVALID_SEQUENCE"
    | "ERR_INVALID_BATCH"
    | "ERR_INVALID_GRAMMAR"
    | "ERR_CONTEXT_FULL"
    | "ERR_CONTEXT_CREATE"
    /** llama.cpp failed an assertion inside this context's decode: it cannot be used again (dispose it). */
    | "ERR_CONTEXT_BROKEN"
    | "ERR_NO_LOGITS"
    | "ERR_NO_CANDIDATES"
    | "ERR_NO_CHAT_TEMPLATE"
    | "ERR_INVALID_TEMPLATE"
    | "ERR_TEMPLATE_RENDER"
    | "ERR_UNSAFE_PROMPT"
    | "ERR_CHAT_PARSE"
    | "ERR_STATE_MISMATCH"
    | "ERR_UNSUPPORTED"
    | "ERR_DISPOSED"
    | "ERR_ABORTED"
    | "ERR_BUSY"
    | "ERR_DECODE"
    /** The model and context do not fit the free memory of the devices (gpuLayers: "auto", a fit check). */
    | "ERR_OUT_OF_MEMORY"
    | "ERR_NATIVE"
    | "ERR_ADDON_LOAD";

export class LlamaError extends Error {
    readonly code: ErrorCode;
    constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
        super(message, options);
        this.name = "LlamaError";
        this.code = code;
    }
}

/**
 * Turns a native rejection ({message, code}) into a LlamaError whose stack is the one
 * captured when the public call was made (the native stack says nothing useful).
 */
export function fromNative(err: unknown, stack?: Error): LlamaError {
    if (err instanceof LlamaError) return err;
    const e = err as { message?: string; code?: string } | undefined;
    const code = (typeof e?.code === "string" && e.code.startsWith("ERR_") ? e.code : "ERR_NATIVE") as ErrorCode;
    const out = new LlamaError(code, e?.message ?? String(err), { cause: err });
    if (stack?.stack) out.stack = `LlamaError: ${out.message}\n${stack.stack.split("\n").slice(1).join("\n")}`;
    return out;
}

/** Runs a native promise, mapping its rejection to a LlamaError with the caller's stack. */
export async function callNative<T>(fn: () => Promise<T>): Promise<T> {
    const stack = new Error();
    try {
        return await fn();
    } catch (err) {
        throw fromNative(err, stack);
    }
}

export function disposedError(what: string): LlamaError {
    return new LlamaError("ERR_DISPOSED", `the ${what} is disposed`);
}

export function abortedError(what: string, reason?: unknown): LlamaError {
    return new LlamaError("ERR_ABORTED", `${what} was aborted`, reason === undefined ? undefined : { cause: reason });
}
