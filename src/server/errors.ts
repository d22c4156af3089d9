// Errors as the OpenAI API shapes them: { error: { message, type, param, code } } with the
// HTTP status a client library maps to its own error classes (400 BadRequestError, 401,
// 404, 413, 429 RateLimitError, 503). Every failure a route can meet goes through here.
import { LlamaError, type ErrorCode } from "../errors.js";

export interface ApiErrorBody {
    error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error a route raises on purpose, with the field it is about. */
export class ApiError extends Error {
    readonly status: number;
    readonly param: string | null;
    readonly code: string | null;
    readonly type: string;
    constructor(status: number, message: string, o: { param?: string | null; code?: string | null; type?: string } = {}) {
        super(message);
        this.status = status;
        this.param = o.param ?? null;
        this.code = o.code ?? null;
        this.type = o.type ?? (status === 401 ? "authentication_error" : status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error");
    }
}

export function badRequest(param: string, message: string, code: string | null = "invalid_value"): ApiError {
    return new ApiError(400, `Invalid value for '${param}': ${message}`, { param, code });
}

// LlamaError codes that mean "the request was wrong" rather than "the server failed".
const CLIENT_CODES = new Set<ErrorCode>(["ERR_INVALID_OPTION", "ERR_INVALID_TOKEN", "ERR_INVALID_GRAMMAR", "ERR_INVALID_BATCH", "ERR_NO_CHAT_TEMPLATE", "ERR_UNSUPPORTED"]);

interface AjvError {
    instancePath?: string;
    keyword?: string;
    message?: string;
    params?: { additionalProperty?: string; missingProperty?: string; allowedValues?: unknown[]; limit?: number };
}

/** "/messages/0/role" -> "messages[0].role" (the OpenAI error's param spelling). */
export function paramName(instancePath: string, extra?: string): string {
    const parts = instancePath.split("/").filter((p) => p !== "").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    if (extra !== undefined) parts.push(extra);
    let out = "";
    for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === "" ? p : `.${p}`;
    return out || "body";
}

function fromValidation(errors: AjvError[]): ApiError {
    const e = errors[0] ?? {};
    const path = e.instancePath ?? "";
    if (e.keyword === "additionalProperties" && e.params?.additionalProperty !== undefined) {
        const param = paramName(path, e.params.additionalProperty);
        return new ApiError(400, `Unrecognized request argument supplied: ${param}`, { param, code: "unknown_parameter" });
    }
    if (e.keyword === "required" && e.params?.missingProperty !== undefined) {
        const param = paramName(path, e.params.missingProperty);
        return new ApiError(400, `Missing required parameter: '${param}'`, { param, code: "missing_required_parameter" });
    }
    const param = paramName(path);
    const allowed = e.params?.allowedValues ? ` (${e.params.allowedValues.map((v) => JSON.stringify(v)).join(", ")})` : "";
    return badRequest(param, `${e.message ?? "is invalid"}${allowed}`, e.keyword === "type" ? "invalid_type" : "invalid_value");
}

/** Any thrown value -> status and OpenAI-shaped body. */
export function toApiError(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    if (err instanceof LlamaError) {
        switch (err.code) {
            case "ERR_BUSY":
                return new ApiError(429, err.message, { code: "server_busy" });
            case "ERR_DISPOSED":
                return new ApiError(503, "the server is shutting down", { code: "unavailable" });
            case "ERR_CONTEXT_FULL":
                return new ApiError(400, err.message, { code: "context_length_exceeded", param: "messages" });
            case "ERR_ABORTED":
                return new ApiError(499, err.message, { code: "aborted" });
            default:
                if (CLIENT_CODES.has(err.code)) return new ApiError(400, err.message, { code: err.code.toLowerCase() });
                return new ApiError(500, err.message, { code: err.code.toLowerCase() });
        }
    }
    const e = err as { statusCode?: number; validation?: AjvError[]; code?: string; message?: string } | null;
    if (e && Array.isArray(e.validation)) return fromValidation(e.validation);
    if (e && typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
        // fastify's own: malformed JSON, body too large, wrong content type, bad URL.
        const message = e.code === "FST_ERR_CTP_BODY_TOO_LARGE" ? "Request body is too large" : e.message ?? "bad request";
        return new ApiError(e.statusCode, message, { code: e.code ?? null });
    }
    return new ApiError(500, "internal server error", { code: "internal_error" });
}

export function errorBody(e: ApiError): ApiErrorBody {
    return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}
