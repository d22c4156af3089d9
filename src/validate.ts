// Argument checking shared by every public call: small predicates and one error factory,
// so messages read the same everywhere ("Expected X for name but received V of type T").
import { LlamaError } from "./errors.js";

export function describe(value: unknown): string {
    let shown: string;
    try {
        shown = typeof value === "string" ? JSON.stringify(value) : typeof value === "bigint" ? `${value}n` : String(value);
    } catch {
        shown = Object.prototype.toString.call(value);
    }
    if (shown.length > 60) shown = shown.slice(0, 57) + "...";
    return `${shown} of type ${value === null ? "null" : typeof value}`;
}

export function invalidOption(name: string, expected: string, value: unknown): LlamaError {
    return new LlamaError("ERR_INVALID_OPTION", `Expected ${expected} for ${name} but received ${describe(value)}`);
}

export const is = {
    defined: (v: unknown): boolean => v !== undefined,
    object: (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v),
    bool: (v: unknown): v is boolean => typeof v === "boolean",
    string: (v: unknown): v is string => typeof v === "string",
    fn: (v: unknown): v is (...args: never[]) => unknown => typeof v === "function",
    number: (v: unknown): v is number => typeof v === "number" && Number.isFinite(v),
    integer: (v: unknown): v is number => Number.isInteger(v),
    inRange: (v: number, lo: number, hi: number): boolean => v >= lo && v <= hi,
};

/** The options object itself: undefined → {}; anything else must be a plain object. */
export function optionsObject(name: string, value: unknown): Record<string, unknown> {
    if (value === undefined) return {};
    if (!is.object(value)) throw invalidOption(name, "an object", value);
    return value;
}

// Levenshtein distance, for "did you mean" on misspelled option names.
function distance(a: string, b: string): number {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
        for (let j = 1; j <= b.length; j++)
            d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length]![b.length]!;
}

/** Rejects option names that are not known, suggesting the closest known one. */
export function checkKnownKeys(where: string, options: Record<string, unknown>, known: readonly string[]): void {
    for (const key of Object.keys(options)) {
        if (known.includes(key)) continue;
        const lower = key.toLowerCase();
        let best = known.find((k) => k.toLowerCase() === lower);
        if (!best) {
            let bestD = Infinity;
            for (const k of known) {
                const dd = distance(lower, k.toLowerCase());
                if (dd < bestD) [bestD, best] = [dd, k];
            }
            if (bestD > Math.max(2, Math.floor(key.length / 3))) best = undefined;
        }
        throw new LlamaError("ERR_INVALID_OPTION", `Unknown option "${key}" for ${where}` + (best ? `: did you mean "${best}"?` : `; known options: ${known.join(", ")}`));
    }
}

export function optBool(o: Record<string, unknown>, name: string, def: boolean): boolean {
    const v = o[name];
    if (v === undefined) return def;
    if (!is.bool(v)) throw invalidOption(name, "a boolean", v);
    return v;
}

export function optInt(o: Record<string, unknown>, name: string, def: number, lo: number, hi: number): number {
    const v = o[name];
    if (v === undefined) return def;
    if (!is.integer(v) || !is.inRange(v as number, lo, hi)) throw invalidOption(name, `an integer between ${lo} and ${hi}`, v);
    return v as number;
}

export function optNumber(o: Record<string, unknown>, name: string, def: number, lo: number, hi: number): number {
    const v = o[name];
    if (v === undefined) return def;
    if (!is.number(v) || !is.inRange(v, lo, hi)) throw invalidOption(name, `a number between ${lo} and ${hi}`, v);
    return v;
}

export function optEnum<T extends string>(o: Record<string, unknown>, name: string, def: T, values: readonly T[]): T {
    const v = o[name];
    if (v === undefined) return def;
    if (!values.includes(v as T)) throw invalidOption(name, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, v);
    return v as T;
}

export function optSignal(o: Record<string, unknown>, name = "signal"): AbortSignal | undefined {
    const v = o[name];
    if (v === undefined) return undefined;
    if (!(v instanceof AbortSignal)) throw invalidOption(name, "an AbortSignal", v);
    return v;
}

export function optFunction<F>(o: Record<string, unknown>, name: string): F | undefined {
    const v = o[name];
    if (v === undefined) return undefined;
    if (!is.fn(v)) throw invalidOption(name, "a function", v);
    return v as F;
}
