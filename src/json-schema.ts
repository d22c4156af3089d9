// JSON schema → GBNF grammar, for a subset of JSON schema whose every instance the grammar
// can describe exactly: type (incl. arrays of types), properties, required,
// additionalProperties (false / true), items, minItems, maxItems, minLength, maxLength,
// enum, const, anyOf, oneOf (treated as anyOf). Keywords that constrain values in ways a
// grammar cannot follow here (minimum, pattern, $ref, ...) are rejected rather than ignored,
// so a schema that converts yields output that validates. Annotations (title, description,
// default, examples, format, $schema, $id) are ignored.
//
// Objects emit properties in schema order, required ones first; optional ones may be
// skipped. Whitespace between tokens is limited to one optional space or newline, so a small
// model cannot wander off into endless blanks.
import { LlamaError } from "./errors.js";

const ANNOTATIONS = new Set(["title", "description", "default", "examples", "format", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"]);
const SUPPORTED = new Set(["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf"]);

const PRIMITIVES: Record<string, string> = {
    ws: '[ \\n]?',
    char: '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    string: '"\\"" char* "\\""',
    integer: '"-"? ("0" | [1-9] [0-9]{0,15})',
    number: '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})?',
    boolean: '"true" | "false"',
    null: '"null"',
    value: 'object | array | string | number | boolean | null',
    object: '"{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"',
    array: '"[" ws ( value ws ( "," ws value ws )* )? "]"',
};

const PRIMITIVE_DEPS: Record<string, (keyof typeof PRIMITIVES)[]> = {
    string: ["char"],
    value: ["object", "array", "string", "number", "boolean", "null"],
    object: ["ws", "string", "value"],
    array: ["ws", "value"],
};

/** A GBNF string literal for `text`. */
function literal(text: string): string {
    let out = '"';
    for (const ch of text) {
        const c = ch.codePointAt(0)!;
        if (ch === '"') out += '\\"';
        else if (ch === "\\") out += "\\\\";
        else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
        else out += ch;
    }
    return out + '"';
}

function fail(path: string, why: string): never {
    throw new LlamaError("ERR_INVALID_OPTION", `jsonSchema${path}: ${why}`);
}

class GrammarBuilder {
    readonly rules = new Map<string, string>();
    readonly #byBody = new Map<string, string>();
    readonly #used = new Set<string>();
    #n = 0;

    /** A primitive rule, added on first use (with the rules it refers to). */
    prim(name: keyof typeof PRIMITIVES): string {
        if (!this.#used.has(name)) {
            this.#used.add(name);
            this.rules.set(name, PRIMITIVES[name]!);
            for (const dep of PRIMITIVE_DEPS[name] ?? []) this.prim(dep);
        }
        return name;
    }

    /** A named rule for `body` (identical bodies share one rule). */
    rule(hint: string, body: string): string {
        const known = this.#byBody.get(body);
        if (known) return known;
        const name = `${hint.replace(/[^a-zA-Z0-9]+/g, "-").replace(/^-+|-+$/g, "").toLowerCase() || "r"}-${++this.#n}`;
        this.rules.set(name, body);
        this.#byBody.set(body, name);
        return name;
    }

    text(root: string): string {
        const lines = [`root ::= ${root}`];
        for (const [k, v] of this.rules) lines.push(`${k} ::= ${v}`);
        return lines.join("\n") + "\n";
    }
}

function repeat(min: number, max: number | undefined): string {
    if (max === undefined) return min === 0 ? "*" : min === 1 ? "+" : `{${min},}`;
    return min === max ? `{${min}}` : `{${min},${max}}`;
}

function nonNegInt(s: Record<string, unknown>, key: string, path: string): number | undefined {
    const v = s[key];
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || (v as number) < 0) fail(path, `${key} must be a non-negative integer`);
    return v as number;
}

function visit(b: GrammarBuilder, schema: unknown, path: string): string {
    if (schema === true || (typeof schema === "object" && schema !== null && Object.keys(schema).length === 0)) return b.prim("value");
    if (schema === false) fail(path, "false admits no value");
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) fail(path, "a schema must be an object or a boolean");
    const s = schema as Record<string, unknown>;
    for (const k of Object.keys(s)) {
        if (!SUPPORTED.has(k) && !ANNOTATIONS.has(k)) fail(path, `the keyword "${k}" is not supported (supported: ${[...SUPPORTED].join(", ")})`);
    }
    if ("const" in s) return literal(JSON.stringify(s.const));
    if ("enum" in s) {
        if (!Array.isArray(s.enum) || s.enum.length === 0) fail(path, "enum must be a non-empty array");
        return b.rule(`${path}-enum`, s.enum.map((v) => literal(JSON.stringify(v))).join(" | "));
    }
    const alts = s.anyOf ?? s.oneOf;
    if (alts !== undefined) {
        if (!Array.isArray(alts) || alts.length === 0) fail(path, "anyOf/oneOf must be a non-empty array");
        if (s.type !== undefined) fail(path, "anyOf/oneOf together with type is not supported");
        return b.rule(`${path}-alt`, alts.map((a, i) => visit(b, a, `${path}/anyOf/${i}`)).join(" | "));
    }
    if (Array.isArray(s.type)) {
        if (s.type.length === 0) fail(path, "type must not be empty");
        return b.rule(`${path}-types`, s.type.map((t) => visitType(b, s, t, path)).join(" | "));
    }
    if (s.type === undefined) {
        if ("properties" in s || "required" in s) return visitType(b, s, "object", path);
        if ("items" in s) return visitType(b, s, "array", path);
        return b.prim("value");
    }
    return visitType(b, s, s.type, path);
}

function visitType(b: GrammarBuilder, s: Record<string, unknown>, type: unknown, path: string): string {
    switch (type) {
        case "string": {
            const min = nonNegInt(s, "minLength", path) ?? 0;
            const max = nonNegInt(s, "maxLength", path);
            if (max !== undefined && max < min) fail(path, "maxLength is below minLength");
            if (min === 0 && max === undefined) return b.prim("string");
            b.prim("char");
            return b.rule(`${path}-string`, `"\\"" char${repeat(min, max)} "\\""`);
        }
        case "integer":
            return b.prim("integer");
        case "number":
            return b.prim("number");
        case "boolean":
            return b.prim("boolean");
        case "null":
            return b.prim("null");
        case "array":
            return visitArray(b, s, path);
        case "object":
            return visitObject(b, s, path);
        default:
            fail(path, `unknown type ${JSON.stringify(type)}`);
    }
}

function visitArray(b: GrammarBuilder, s: Record<string, unknown>, path: string): string {
    const ws = b.prim("ws");
    if (Array.isArray(s.items)) fail(path, "tuple items (an array of schemas) are not supported");
    const item = visit(b, s.items ?? true, `${path}/items`);
    const min = nonNegInt(s, "minItems", path) ?? 0;
    const max = nonNegInt(s, "maxItems", path);
    if (max !== undefined && max < min) fail(path, "maxItems is below minItems");
    if (max === 0) return b.rule(`${path}-array`, `"[" ${ws} "]"`);
    const more = `( "," ${ws} ${item} ${ws} )${repeat(Math.max(0, min - 1), max === undefined ? undefined : max - 1)}`;
    const list = `${item} ${ws} ${more}`;
    return b.rule(`${path}-array`, `"[" ${ws} ${min === 0 ? `( ${list} )?` : list} "]"`);
}

function visitObject(b: GrammarBuilder, s: Record<string, unknown>, path: string): string {
    const ws = b.prim("ws");
    const props = s.properties ?? {};
    if (typeof props !== "object" || props === null || Array.isArray(props)) fail(path, "properties must be an object");
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) fail(path, "required must be an array of strings");
    const ap = s.additionalProperties;
    if (ap !== undefined && typeof ap !== "boolean") fail(path, "additionalProperties must be true or false (schemas are not supported)");
    const entries = Object.entries(props as Record<string, unknown>);
    if (entries.length === 0 && required.length === 0) {
        return ap === false ? b.rule(`${path}-empty`, `"{" ${ws} "}"`) : b.prim("object");
    }
    const kv = (name: string, sub: unknown) => `${literal(JSON.stringify(name))} ${ws} ":" ${ws} ${visit(b, sub, `${path}/properties/${name}`)} ${ws}`;
    const req: string[] = [];
    for (const name of required as string[]) {
        req.push(kv(name, (props as Record<string, unknown>)[name] ?? true));
    }
    const opt = entries.filter(([name]) => !(required as string[]).includes(name)).map(([name, sub]) => kv(name, sub));
    const optTail = (from: number) => opt.slice(from).map((p) => `( "," ${ws} ${p} )?`).join(" ");
    let body: string;
    if (req.length > 0) {
        body = [req.join(` "," ${ws} `), optTail(0)].filter(Boolean).join(" ");
    } else {
        // Some subset of the optional properties, in order: S_i ::= p_i tail(i+1) | S_(i+1).
        let next = "";
        for (let i = opt.length - 1; i >= 0; i--) {
            const here = [opt[i], optTail(i + 1)].filter(Boolean).join(" ");
            next = b.rule(`${path}-props`, next ? `${here} | ${next}` : here);
        }
        body = `( ${next} )?`;
    }
    return b.rule(`${path}-object`, `"{" ${ws} ${body} "}"`);
}

/** The GBNF grammar (root rule "root") whose strings are the JSON texts valid under `schema`. */
export function jsonSchemaToGrammar(schema: unknown): string {
    if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null || Array.isArray(schema))) {
        throw new LlamaError("ERR_INVALID_OPTION", `Expected a JSON schema (an object or a boolean) for jsonSchema but received ${typeof schema}`);
    }
    const b = new GrammarBuilder();
    const root = visit(b, schema, "");
    return b.text(root);
}
