// JSON schema → GBNF grammar, by llama.cpp's own converter (common/json-schema-to-grammar):
// $ref/$defs, anyOf/oneOf/allOf, enum, const, properties/required/additionalProperties,
// items/prefixItems/minItems/maxItems, minLength/maxLength, anchored patterns, integer
// ranges, and the formats date, time, date-time and uuid.
//
// The converter skips keywords it does not know, and some it knows when they come without
// the keywords it reads them with (maxItems without items, minLength without type "string");
// a grammar that skips one would let through output the schema forbids. So the schema is
// walked here first and anything the converter would not enforce is refused up front, naming
// the keyword and where it is. (Patterns it cannot translate are refused by the converter
// itself: native/patches/0003.) The other way round, it is stricter than JSON Schema in one
// place: an empty schema ({} or true) becomes "any JSON object", not "any JSON value".
import { binding } from "./binding.js";
import { LlamaError } from "./errors.js";

const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"]);
const ENFORCED = new Set([
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
]);
const SCHEMA_VALUED = new Set(["properties", "$defs", "definitions", "anyOf", "oneOf", "allOf", "prefixItems", "items", "additionalProperties"]);
const FORMATS = /^(date|time|date-time|uuid[1-5]?)$/;
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);
const MAX_DEPTH = 64;
const MAX_NODES = 10_000;

function fail(path: string, why: string): never {
    throw new LlamaError("ERR_INVALID_OPTION", `jsonSchema${path || " (root)"}: ${why}`);
}

/** Refuses what llama.cpp's converter would not enforce, cycles, depth past 64 and non-JSON values. */
function check(schema: unknown, path: string, depth: number, seen: Set<object>, count: { n: number }): void {
    if (++count.n > MAX_NODES) fail(path, `more than ${MAX_NODES} schema nodes`);
    if (depth > MAX_DEPTH) fail(path, `nested deeper than ${MAX_DEPTH} levels`);
    if (typeof schema === "boolean") {
        if (!schema) fail(path, "false allows no value, so no grammar can produce one");
        return;
    }
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) fail(path, `expected a JSON schema (an object or true) but received ${Array.isArray(schema) ? "an array" : typeof schema}`);
    if (seen.has(schema)) fail(path, "the schema object refers to itself (a cycle); use $ref for recursive schemas");
    seen.add(schema);
    const s = schema as Record<string, unknown>;
    const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
    for (const t of types) if (typeof t !== "string" || !TYPES.has(t)) fail(`${path}/type`, `unknown type ${JSON.stringify(t)}`);
    for (const [k, v] of Object.entries(s)) {
        const at = `${path}/${k}`;
        if (ANNOTATIONS.has(k)) continue;
        if (!ENFORCED.has(k)) fail(at, `the keyword "${k}" cannot be enforced by a grammar`);
        if (!SCHEMA_VALUED.has(k)) checkJsonValue(v, at, 0); // schema values are walked by check() itself
        if (k === "format" && !(typeof v === "string" && FORMATS.test(v))) {
            fail(at, `format ${JSON.stringify(v)} cannot be enforced (supported: date, time, date-time, uuid)`);
        }
        if ((k === "minimum" || k === "maximum" || k === "exclusiveMinimum" || k === "exclusiveMaximum") && !(types.length === 1 && types[0] === "integer")) {
            fail(at, `${k} is enforced only on { type: "integer" }`);
        }
        if ((k === "minimum" || k === "maximum" || k === "exclusiveMinimum" || k === "exclusiveMaximum" || k === "minItems" || k === "maxItems" || k === "minLength" || k === "maxLength") && !Number.isSafeInteger(v)) {
            fail(at, "expected an integer");
        }
        if (k === "pattern" && typeof v !== "string") fail(at, "expected a string");
        if (k === "$ref" && typeof v !== "string") fail(at, "expected a string");
        if (k === "required" && !(Array.isArray(v) && v.every((x) => typeof x === "string"))) fail(at, "expected an array of property names");
        if (k === "enum" && !(Array.isArray(v) && v.length > 0)) fail(at, "expected a non-empty array");
        if (k === "properties" || k === "$defs" || k === "definitions") {
            if (typeof v !== "object" || v === null || Array.isArray(v)) fail(at, "expected an object of schemas");
            for (const [name, sub] of Object.entries(v as object)) check(sub, `${at}/${name}`, depth + 1, seen, count);
        }
        if (k === "anyOf" || k === "oneOf" || k === "allOf" || k === "prefixItems") {
            if (!Array.isArray(v) || v.length === 0) fail(at, "expected a non-empty array of schemas");
            v.forEach((sub, i) => check(sub, `${at}/${i}`, depth + 1, seen, count));
        }
        if (k === "items") {
            if (Array.isArray(v)) fail(at, "tuple form: use prefixItems");
            if (v !== false || s.prefixItems === undefined) check(v, at, depth + 1, seen, count); // false after prefixItems: no more items
        }
        if (k === "additionalProperties" && typeof v !== "boolean") check(v, at, depth + 1, seen, count);
    }
    // Keywords llama.cpp's converter reads only in some company, and skips otherwise.
    const only = (k: string, ok: boolean, need: string) => {
        if (s[k] !== undefined && !ok) fail(`${path}/${k}`, `${k} is enforced only ${need}`);
    };
    const isString = types.length === 1 && types[0] === "string";
    const untypedOrString = types.length === 0 || isString;
    for (const k of ["minItems", "maxItems"]) only(k, s.items !== undefined && s.prefixItems === undefined, "with items (and no prefixItems)");
    for (const k of ["minLength", "maxLength"]) only(k, isString && s.pattern === undefined && s.format === undefined, 'on { type: "string" } without pattern or format');
    for (const k of ["pattern", "format"]) only(k, untypedOrString, 'on strings (no type, or type "string")');
    only("additionalProperties", types.length === 0 || (types.length === 1 && types[0] === "object"), 'on objects');
    if (typeof s.minItems === "number" && typeof s.maxItems === "number" && s.maxItems < s.minItems) fail(`${path}/maxItems`, "maxItems is below minItems");
    if (typeof s.minLength === "number" && typeof s.maxLength === "number" && s.maxLength < s.minLength) fail(`${path}/maxLength`, "maxLength is below minLength");
    seen.delete(schema);
}

/** enum/const values and every other keyword's value must be plain JSON (no bigint, no functions, no cycles). */
function checkJsonValue(v: unknown, path: string, depth: number): void {
    if (depth > MAX_DEPTH) fail(path, `nested deeper than ${MAX_DEPTH} levels`);
    if (v === null || typeof v === "string" || typeof v === "boolean") return;
    if (typeof v === "number") {
        if (!Number.isFinite(v)) fail(path, `${v} is not a JSON number`);
        return;
    }
    if (Array.isArray(v)) return v.forEach((x, i) => checkJsonValue(x, `${path}/${i}`, depth + 1));
    if (typeof v === "object") return Object.entries(v).forEach(([k, x]) => checkJsonValue(x, `${path}/${k}`, depth + 1));
    fail(path, `a ${typeof v} is not a JSON value`);
}

/** The GBNF grammar (root rule "root") whose strings are the JSON texts valid under `schema`. */
export function jsonSchemaToGrammar(schema: unknown): string {
    if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null || Array.isArray(schema))) {
        throw new LlamaError("ERR_INVALID_OPTION", `Expected a JSON schema (an object or a boolean) for jsonSchema but received ${Array.isArray(schema) ? "an array" : typeof schema}`);
    }
    check(schema, "", 0, new Set(), { n: 0 });
    try {
        // items: false after prefixItems ("no more items") is what the converter does with
        // prefixItems anyway, and it refuses the false: leave it out.
        const text = JSON.stringify(schema === true ? {} : schema, function (this: Record<string, unknown>, k: string, v: unknown) {
            return k === "items" && v === false && this.prefixItems !== undefined ? undefined : v;
        });
        return binding().jsonSchemaToGrammar(text);
    } catch (err) {
        const msg = (err as Error).message.replace(/^the JSON schema cannot be turned into a grammar: /, "");
        throw new LlamaError("ERR_INVALID_OPTION", `jsonSchema: ${msg}`, { cause: err });
    }
}
