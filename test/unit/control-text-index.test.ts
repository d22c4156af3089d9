// ControlTextIndex decides whether a message string could produce a control token (then the
// prompt is rendered a second time with sentinels to keep it apart). Its answers are
// remembered per string, since a conversation's history comes back every turn: a remembered
// answer must be the computed one, and strings past the memo's budget are still answered.
import { describe, expect, it } from "vitest";
import { ControlTextIndex } from "../../src/chat/templates.js";

const CONTROL = ["<|im_start|>", "<|im_end|>", "[INST]"];

// What touches() must say, worked out by hand from its definition.
const CASES: [string, boolean][] = [
    ["plain text", false],
    ["a <|im_start|>system line", true], // holds one
    ["ends with the start of one <|im_", true], // could be completed by text after it
    ["|> starts with the end of one", true], // could complete one before it
    ["[INST", true],
    ["INST]", true],
    ["< | im_start | >", false],
    ["", false],
];

describe("ControlTextIndex", () => {
    it("answers the same the first time and when the answer is remembered", () => {
        const index = new ControlTextIndex(CONTROL);
        for (const [s, want] of CASES) expect(index.touches(s), s).toBe(want);
        for (const [s, want] of CASES) expect(index.touches(s), `${s} (again)`).toBe(want);
    });

    it("a string longer than the memo's budget is answered, and later strings still are", () => {
        const index = new ControlTextIndex(CONTROL);
        const long = "x".repeat(1 << 21);
        expect(index.touches(long)).toBe(false);
        expect(index.touches(long + "<|im_end|>")).toBe(true);
        expect(index.touches(`${long}<|im_`)).toBe(true);
        for (const [s, want] of CASES) expect(index.touches(s), s).toBe(want);
    });

    it("a memo that fills up starts over and keeps answering right", () => {
        const index = new ControlTextIndex(CONTROL);
        const big = "y".repeat(300_000); // four of these pass the budget
        for (let i = 0; i < 10; i++) {
            expect(index.touches(big + i)).toBe(false);
            expect(index.touches(`${big}${i}<|im_`)).toBe(true);
        }
        for (const [s, want] of CASES) expect(index.touches(s), s).toBe(want);
    });
});
