// jsonSchemaToGrammar (llama.cpp's common/json-schema-to-grammar behind an up-front check):
// the grammar accepts JSON texts that are valid under the schema and rejects invalid ones,
// checked with an independent GBNF recognizer (test/helpers); and schemas it cannot follow
// exactly are refused with a code, never silently loosened.
import { describe, expect, it } from "vitest";
import { jsonSchemaToGrammar } from "../../src/json-schema.js";
import { gbnfAccepts } from "../helpers/gbnf-match.js";

describe("the test recognizer itself", () => {
    it("handles literals, classes, groups, repetition and escapes", () => {
        const g = 'root ::= "a" [b-d]+ ( "x" | "yz" )? [^"\\\\]{0,2} "\\x41"\n';
        for (const s of ["abA", "abcdxA", "abyzqqA", "ab\u00e9A"]) expect(gbnfAccepts(g, s), s).toBe(true);
        for (const s of ["aA", "abxyzqA", "abqqqA", 'ab"A', "ab"]) expect(gbnfAccepts(g, s), s).toBe(false);
    });
});

function check(schema: unknown, good: unknown[], bad: string[]) {
    const g = jsonSchemaToGrammar(schema);
    for (const v of good) {
        const text = typeof v === "string" && v.startsWith("RAW:") ? v.slice(4) : JSON.stringify(v);
        expect(gbnfAccepts(g, text), `should accept ${text}\n${g}`).toBe(true);
    }
    for (const text of bad) expect(gbnfAccepts(g, text), `should reject ${text}\n${g}`).toBe(false);
}

describe("schemas → grammars that accept exactly the valid instances", () => {
    it("primitives", () => {
        check({ type: "string" }, ["", "hi", 'q"uote', "back\\slash", "new\nline", "ünï😀"], ["hi", '"unterminated', '"a"b"', "1"]);
        check({ type: "integer" }, [0, -3, 1234567], ["1.5", "01", "-", "1e3", '"1"']);
        check({ type: "number" }, [0, -3.25, 1e21, 1.5e-7, 12], ["01", ".5", "1.", "--1", "NaN"]);
        check({ type: "boolean" }, [true, false], ["True", "1", "null"]);
        check({ type: "null" }, [null], ["nil", "false"]);
        check({ type: ["string", "null"] }, ["x", null], ["1"]);
    });

    it("string lengths", () => {
        check({ type: "string", minLength: 2, maxLength: 3 }, ["ab", "abc", "\n\t"], ['"a"', '"abcd"']);
    });

    it("enum and const", () => {
        check({ enum: ["red", "green", 3, null, { a: 1 }] }, ["red", "green", 3, null, { a: 1 }], ['"blue"', "4", '"Red"']);
        check({ const: "only" }, ["only"], ['"other"']);
    });

    it("objects: required first, optional ones skippable, nothing else", () => {
        const schema = {
            type: "object",
            properties: { a: { type: "integer" }, b: { type: "string" }, c: { type: "boolean" } },
            required: ["b"],
        };
        check(schema, [{ b: "x" }, { b: "x", a: 1 }, { b: "x", c: true }, { b: "x", a: 1, c: false }, "RAW:{ \"b\": \"x\", \"a\": 1 }"], [
            "{}", '{"a":1}', '{"b":1}', '{"b":"x","d":1}', '{"b":"x",}', '{"b":"x" "a":1}',
        ]);
    });

    it("objects with no required properties: any subset, in order", () => {
        const schema = { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" }, c: { type: "integer" } } };
        check(schema, [{}, { a: 1 }, { b: 2 }, { c: 3 }, { a: 1, c: 3 }, { b: 2, c: 3 }, { a: 1, b: 2, c: 3 }], ['{"a":1,}', '{,"a":1}', '{"d":1}', '{"a":1"b":2}']);
    });

    it("arrays with item schemas and bounds", () => {
        check({ type: "array", items: { type: "integer" } }, [[], [1], [1, 2, 3]], ["[1,]", '["a"]', "[,]"]);
        check({ type: "array", items: { type: "boolean" }, minItems: 1, maxItems: 2 }, [[true], [true, false]], ["[]", "[true,true,true]"]);
        check({ type: "array", items: { type: "integer" }, maxItems: 0 }, [[]], ["[1]"]);
    });

    it("nesting, anyOf, and the empty schema", () => {
        const schema = {
            type: "object",
            properties: {
                items: { type: "array", items: { type: "object", properties: { id: { type: "integer" } }, required: ["id"] } },
                meta: {},
                either: { anyOf: [{ type: "string" }, { type: "array", items: { type: "null" } }] },
            },
            required: ["items", "meta", "either"],
        };
        check(schema, [
            { items: [{ id: 1 }, { id: 2 }], meta: { x: [1, "y", null, { z: true }] }, either: "s" },
            { items: [], meta: {}, either: [null, null] },
        ], ['{"items":[{}],"meta":{},"either":"s"}', '{"items":[],"meta":{},"either":[1]}']);
    });

    it("true and {} accept any JSON object (llama.cpp's converter is stricter than JSON Schema here: never looser)", () => {
        check(true, [{}, { "x y": [] }, { a: [1, { b: null }] }], ["", "{", "undefined", "1", '"a"', "[1]"]);
        check({}, [{ k: "v" }], ["null"]);
    });
});

describe("what llama.cpp's converter adds over a hand-written subset", () => {
    it("integer ranges, anchored patterns, formats, $ref, allOf, prefixItems", () => {
        check({ type: "integer", minimum: 3, maximum: 12 }, [3, 7, 12], ["2", "13", "-1", "100"]);
        check({ type: "string", pattern: "^[a-c]{2}[0-9]$" }, ["ab1", "cc9"], ['"ab"', '"abd"', '"ab12"']);
        check({ type: "string", format: "date" }, ["2026-12-01"], ['"2026-13-01"', '"yesterday"']);
        check({ type: "string", format: "uuid" }, ["123e4567-e89b-12d3-a456-426614174000"], ['"123e4567"']);
        check({ $defs: { n: { type: "integer" } }, type: "array", items: { $ref: "#/$defs/n" } }, [[1, 2]], ['["a"]']);
        check({ allOf: [{ type: "object", properties: { a: { type: "integer" } }, required: ["a"] }, { type: "object", properties: { b: { type: "string" } }, required: ["b"] }] }, [{ a: 1, b: "x" }], ['{"a":1}', '{"b":"x"}']);
        check({ type: "array", prefixItems: [{ type: "string" }, { type: "integer" }], items: false }, [["a", 1]], ['[1,"a"]']);
    });
});

describe("schemas it will not loosen", () => {
    it.each([
        [{ type: "number", minimum: 0 }, /minimum is enforced only on/],
        [{ type: "string", pattern: "a+" }, /not anchored/],
        [{ type: "string", format: "email" }, /format "email" cannot be enforced/],
        [{ type: "integer", multipleOf: 3 }, /"multipleOf" cannot be enforced/],
        [{ not: { type: "string" } }, /"not" cannot be enforced/],
        [{ type: "object", patternProperties: { "^a": {} } }, /patternProperties/],
        [{ type: "array", uniqueItems: true }, /uniqueItems/],
        [{ type: "array", items: [{ type: "string" }] }, /tuple/],
        [{ type: "array", maxItems: 2 }, /maxItems is enforced only with items/],
        [{ minLength: 2 }, /minLength is enforced only on \{ type: "string" \}/],
        [{ type: "integer", pattern: "^1$" }, /pattern is enforced only on strings/],
        [{ type: "array", items: { type: "string" }, minItems: 3, maxItems: 2 }, /maxItems is below minItems/],
        [{ type: "string", minLength: 3, maxLength: 1 }, /maxLength/],
        [{ type: "date" }, /unknown type/],
        [{ enum: [] }, /enum/],
        [{ const: 1n }, /bigint is not a JSON value/],
        [{ type: "integer", minimum: 1.5 }, /integer/],
        [false, /no value/],
        ["string", /JSON schema/],
    ] as [unknown, RegExp][])("%s", (schema, message) => {
        expect(() => jsonSchemaToGrammar(schema)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION", message: expect.stringMatching(message) }));
    });

    it("cycles and absurd depth are refused with a code, not a stack overflow", () => {
        const cyclic: Record<string, unknown> = { type: "object", properties: {} };
        (cyclic.properties as Record<string, unknown>).self = cyclic;
        expect(() => jsonSchemaToGrammar(cyclic)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION", message: expect.stringMatching(/cycle/) }));
        let deep: Record<string, unknown> = { type: "string" };
        for (let i = 0; i < 20_000; i++) deep = { type: "array", items: deep };
        expect(() => jsonSchemaToGrammar(deep)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION", message: expect.stringMatching(/deeper than 64/) }));
    });

    it("annotations are fine", () => {
        expect(() => jsonSchemaToGrammar({ title: "T", description: "d", type: "string", format: "date-time", default: "a", $schema: "x", examples: ["b"] })).not.toThrow();
    });
});
