// The expected renderings in llama.cpp's own tests/test-chat-template.cpp (pinned tree), read
// from the C++ source: each test case's template, expected output (Jinja path) and tokens.
import { readFileSync } from "node:fs";

export interface LlamaChatVector {
    name: string;
    template: string;
    expected: string;
    bos: string;
    eos: string;
    extra: { role: string; content: string }[];
}

/** The fixed conversation every case renders (main_automated_tests). */
export const VECTOR_CONVERSATION = [
    { role: "system", content: "You are a helpful assistant" },
    { role: "user", content: "Hello" },
    { role: "assistant", content: "Hi there" },
    { role: "user", content: "Who are you" },
    { role: "assistant", content: "   I am an assistant   " },
    { role: "user", content: "Another question" },
];

/** Reads adjacent C++ string literals ("a" "b", u8"...", U8C("...")) starting at `i`. */
function readStrings(src: string, i: number): { value: string; end: number } | null {
    let out = "";
    let any = false;
    for (;;) {
        while (/\s/.test(src[i]!)) i++;
        if (src.startsWith("U8C(", i)) {
            const r = readStrings(src, i + 4);
            if (!r) return null;
            out += r.value;
            i = r.end;
            while (/\s/.test(src[i]!)) i++;
            if (src[i] !== ")") return null;
            i++;
            any = true;
            continue;
        }
        if (src.startsWith('u8"', i)) i += 2;
        if (src[i] !== '"') break;
        i++;
        let bytes: number[] = [];
        const flush = () => {
            out += Buffer.from(bytes).toString("utf8");
            bytes = [];
        };
        while (src[i] !== '"') {
            const c = src[i]!;
            if (c === "\\") {
                const e = src[i + 1]!;
                const simple: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0" };
                if (e === "x") {
                    const m = /^[0-9a-fA-F]+/.exec(src.slice(i + 2))!;
                    bytes.push(parseInt(m[0], 16));
                    i += 2 + m[0].length;
                    continue;
                }
                if (!(e in simple)) return null;
                flush();
                out += simple[e];
                i += 2;
                continue;
            }
            flush();
            out += c;
            i++;
        }
        flush();
        i++;
        any = true;
    }
    return any ? { value: out, end: i } : null;
}

export function readLlamaChatVectors(file: string): LlamaChatVector[] {
    const src = readFileSync(file, "utf8");
    const body = src.slice(src.indexOf("std::vector<TestCase> test_cases {"));
    const out: LlamaChatVector[] = [];
    for (const chunk of body.split("/* .name= */").slice(1)) {
        const field = (name: string): string | null => {
            const at = chunk.indexOf(`/* .${name}= */`);
            if (at < 0) return null;
            return readStrings(chunk, at + `/* .${name}= */`.length)?.value ?? null;
        };
        const name = readStrings(chunk, 0)?.value;
        const template = field("template_str");
        const legacy = field("expected_output");
        const jinja = field("expected_output_jinja");
        if (!name || template === null || legacy === null) continue;
        if (/\/\* \.supported_with_jinja= \*\/\s*false/.test(chunk.split("/* .name= */")[0]!)) continue;
        const extra: { role: string; content: string }[] = [];
        const at = chunk.indexOf("/* .extra_conversation= */");
        if (at >= 0) {
            // { {"role", "content"}, ... }: read with the literal reader (contents hold braces).
            let i = chunk.indexOf("{", at) + 1;
            for (;;) {
                while (/\s|,/.test(chunk[i]!)) i++;
                if (chunk[i] !== "{") break;
                const role = readStrings(chunk, i + 1);
                if (!role) break;
                i = role.end;
                while (/\s|,/.test(chunk[i]!)) i++;
                const content = readStrings(chunk, i);
                if (!content) break;
                extra.push({ role: role.value, content: content.value });
                i = chunk.indexOf("}", content.end) + 1;
            }
        }
        out.push({ name, template, expected: jinja || legacy, bos: field("bos_token") ?? "", eos: field("eos_token") ?? "", extra });
    }
    return out;
}
