// resolveSampling: every option validated with a clear error, defaults filled, and the
// resolved chain (which stages, in which order) as documented.
import { describe, expect, it } from "vitest";
import { RANDOM_SEED, checkTriggerPattern, resolveSampling } from "../../src/sampling.js";

const V = 1000;
const kinds = (o: unknown) => resolveSampling(o, V).native.stages.map((s) => s.kind);

describe("validation", () => {
    it.each([
        [{ temperature: -0.1 }, "temperature"],
        [{ temperature: NaN }, "temperature"],
        [{ topP: 1.5 }, "topP"],
        [{ topP: -0.1 }, "topP"],
        [{ topK: -1 }, "topK"],
        [{ topK: 2.5 }, "topK"],
        [{ minP: 2 }, "minP"],
        [{ typicalP: 1.1 }, "typicalP"],
        [{ xtcProbability: 1.5 }, "xtcProbability"],
        [{ mirostat: 3 }, "mirostat"],
        [{ repeatPenalty: 0 }, "repeatPenalty"],
        [{ penaltyLastN: -1 }, "penaltyLastN"],
        [{ dryBase: 0.5 }, "dryBase"],
        [{ dryPenaltyLastN: -2 }, "dryPenaltyLastN"],
        [{ drySequenceBreakers: "\n" }, "drySequenceBreakers"],
        [{ drySequenceBreakers: [""] }, "drySequenceBreakers"],
        [{ seed: -1 }, "seed"],
        [{ seed: 2 ** 32 }, "seed"],
        [{ logProbs: -1 }, "logProbs"],
        [{ grammar: 42 }, "grammar"],
        [{ logitBias: [1, 2] }, "logitBias"],
        [{ logitBias: { 5: NaN } }, "logitBias[5]"],
        [{ logitBias: { 5: Infinity } }, "logitBias[5]"],
    ])("%j is rejected, naming %s", (o, name) => {
        expect(() => resolveSampling(o, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION", message: expect.stringContaining(`for ${name} but received`) }));
    });

    it("messages say what was expected and what came", () => {
        expect(() => resolveSampling({ temperature: -1 }, V)).toThrow("Expected a number between 0 and 1000000 for temperature but received -1 of type number");
        expect(() => resolveSampling({ topP: "0.9" }, V)).toThrow('Expected a number between 0 and 1 for topP but received "0.9" of type string');
    });

    it("misspelled names suggest the right one", () => {
        expect(() => resolveSampling({ topk: 5 }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION", message: expect.stringContaining('did you mean "topK"?') }));
        expect(() => resolveSampling({ temprature: 1 }, V)).toThrow(/did you mean "temperature"\?/);
        expect(() => resolveSampling({ repetitionPenalty: 1 }, V)).toThrow(/did you mean "repeatPenalty"\?/);
        expect(() => resolveSampling({ totallyUnknown: 1 }, V)).toThrow(/Unknown option "totallyUnknown"/);
    });

    it("logitBias token ids must be in the vocabulary", () => {
        expect(() => resolveSampling({ logitBias: { [V]: 1 } }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_TOKEN" }));
        expect(() => resolveSampling({ logitBias: new Map([[-1, 1]]) }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_TOKEN" }));
        expect(() => resolveSampling({ logitBias: { abc: 1 } }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_TOKEN" }));
    });

    it("grammar and jsonSchema exclude each other; a bad jsonSchema is an option error", () => {
        expect(() => resolveSampling({ grammar: 'root ::= "a"', jsonSchema: {} }, V)).toThrow(/either grammar or jsonSchema/);
        // Refused by the up-front check (a keyword llama.cpp's converter would skip), before any native call.
        expect(() => resolveSampling({ jsonSchema: { type: "integer", multipleOf: 2 } }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION" }));
    });

    it("a GBNF repetition {m,n} with n < m is refused here (llama.cpp would hang)", () => {
        expect(() => resolveSampling({ grammar: 'root ::= "a"{5,2}' }, V)).toThrow(expect.objectContaining({ code: "ERR_INVALID_GRAMMAR" }));
        // Braces inside literals, classes and comments are text.
        expect(() => resolveSampling({ grammar: 'root ::= "{5,2}" [{}] # {9,1}\n' }, V)).not.toThrow();
        expect(() => resolveSampling({ grammar: 'root ::= "a"{2,5} "b"{3} "c"{1,}' }, V)).not.toThrow();
    });

    it("options that belong to the caller pass through only when declared", () => {
        expect(() => resolveSampling({ maxTokens: 5 }, V)).toThrow(/Unknown option "maxTokens"/);
        expect(() => resolveSampling({ maxTokens: 5 }, V, 4096, ["maxTokens"])).not.toThrow();
    });
});

describe("defaults and the resolved chain", () => {
    it("defaults are llama.cpp's", () => {
        const r = resolveSampling(undefined, V).options;
        expect(r).toMatchObject({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, typicalP: 1, repeatPenalty: 1, penaltyLastN: 64, seed: RANDOM_SEED, mirostat: 0, logProbs: -1, grammar: null });
        expect(kinds(undefined)).toEqual(["top_k", "top_p", "min_p", "temp", "dist"]);
    });

    it("temperature 0 is greedy: no truncation, no temperature, no RNG", () => {
        expect(kinds({ temperature: 0 })).toEqual(["greedy"]);
        expect(kinds({ temperature: 0, repeatPenalty: 1.1, logitBias: { 1: 2 } })).toEqual(["logit_bias", "penalties", "greedy"]);
    });

    it("stages in llama.cpp's order; no-op stages left out", () => {
        const all = { logitBias: { 3: -Infinity }, repeatPenalty: 1.1, dryMultiplier: 0.5, topNSigma: 1, topK: 10, typicalP: 0.9, topP: 0.9, minP: 0.1, xtcProbability: 0.5 };
        expect(kinds(all)).toEqual(["logit_bias", "penalties", "dry", "top_n_sigma", "top_k", "typical", "top_p", "min_p", "xtc", "temp", "dist"]);
        expect(kinds({ topK: 0, topP: 1, minP: 0 })).toEqual(["temp", "dist"]);
        expect(kinds({ repeatPenalty: 1.2, penaltyLastN: 0 })).not.toContain("penalties");
        expect(kinds({ dynatempRange: 0.3 })).toContain("temp_ext");
    });

    it("mirostat replaces truncation and the final pick", () => {
        expect(kinds({ mirostat: 1 })).toEqual(["temp", "mirostat"]);
        expect(kinds({ mirostat: 2, repeatPenalty: 1.1 })).toEqual(["penalties", "temp", "mirostat_v2"]);
    });

    it("dryPenaltyLastN -1 means the history size given", () => {
        const st = resolveSampling({ dryMultiplier: 1 }, V, 2048).native.stages.find((s) => s.kind === "dry");
        expect(st).toMatchObject({ lastN: 2048, breakers: ["\n", ":", '"', "*"] });
    });

    it("a jsonSchema becomes the grammar (llama.cpp's converter, through the addon)", () => {
        const g = resolveSampling({ jsonSchema: { type: "boolean" } }, V).native.grammar;
        expect(g).toMatch(/^root ::= \("true" \| "false"\)$/m);
    });

    it("equal options share a key; different ones do not", () => {
        const key = (o: unknown) => resolveSampling(o, V).key;
        expect(key({ topK: 5, seed: 1 })).toBe(key({ seed: 1, topK: 5 }));
        expect(key({ logitBias: { 7: -Infinity } })).toBe(key({ logitBias: new Map([[7, -Infinity]]) }));
        expect(key({ topK: 5 })).not.toBe(key({ topK: 6 }));
        expect(key({ logitBias: { 7: -Infinity } })).not.toBe(key({ logitBias: { 7: -1e30 } }));
        expect(key({ logProbs: 3 })).toBe(key({ logProbs: 5 })); // log-probs do not change the chain
    });
});

// Patterns llama.cpp's backtracking std::regex would search in exponential time are refused;
// the forms common/chat's formats use, and character classes, pass.
describe("grammar trigger patterns", () => {
    it.each(["(.|\\s)*TRIGGER", "(a+)+$", "((a+))+", "(a|b)*c", "(x*){2,}", "((a|b))*"])("refuses %s", (p) => {
        expect(() => checkTriggerPattern(p)).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION" }));
    });
    it.each(["[\\s\\S]*TRIGGER", "(<tool_call>)+", "(a+)?", "(a|b){1}", "[(a+)]+", "\\(a+\\)+", "^(\\s*)<function="])("accepts %s", (p) => {
        expect(() => checkTriggerPattern(p)).not.toThrow();
    });
});
