// rank() on a reranker that ships its own prompt (tokenizer.chat_template.rerank): the scores
// are the model's over the prompt llama.cpp's server builds (format_prompt_rerank in
// tools/server/server-common.cpp: {query} and {document} replaced in the template, the whole
// prompt tokenized with add_special false and parse_special true), checked against a float64
// forward of those tokens and against node-llama-cpp's rankAll on the same file.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { loadReferenceBert } from "../helpers/reference-bert.js";
import { peer } from "../helpers/peer.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";
import { planSynthModel } from "../../src/synth/index.js";

// bge's WordPiece vocabulary: [CLS] 101, [SEP] 102.
const TEMPLATE = "[CLS]query: {query}[SEP]passage: {document}[SEP]";
const QUERY = "what do embeddings do?";
const DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors.",
    "Retrieval-augmented generation looks documents up by their vectors before answering.",
    "short",
];

let file: string;
let model: Model;

beforeAll(async () => {
    file = await cachedSynthModel({ preset: "bert-tiny", rankHead: true, seed: 16, rerankTemplate: TEMPLATE });
    model = await loadModel(file);
});
afterAll(async () => {
    await model?.dispose();
});

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** The template's tokens written out by hand: its own words, then the query's and the document's. */
async function templateTokens(query: string, doc: string): Promise<number[]> {
    const t = async (s: string) => Array.from(await model.tokenize(s, { addSpecial: false }));
    return [101, ...(await t("query:")), ...(await t(query)), 102, ...(await t("passage:")), ...(await t(doc)), 102];
}

describe("a reranker with tokenizer.chat_template.rerank", () => {
    it("synth writes the template, and only for a reranker", async () => {
        const plan = await planSynthModel({ preset: "bert-tiny", rankHead: true, rerankTemplate: TEMPLATE, output: "/dev/null" });
        expect(plan.metadata.get("tokenizer.chat_template.rerank")?.value).toBe(TEMPLATE);
        await expect(planSynthModel({ preset: "bert-tiny", rerankTemplate: TEMPLATE, output: "/dev/null" })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await expect(planSynthModel({ preset: "bert-tiny", rankHead: true, rerankTemplate: "{query} only", output: "/dev/null" })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    });

    it("format_prompt_rerank's tokens (template filled in, specials parsed) are the template's own", async () => {
        for (const doc of DOCS) {
            const prompt = TEMPLATE.replaceAll("{query}", QUERY).replaceAll("{document}", doc);
            const server = Array.from(await model.tokenize(prompt, { addSpecial: false, parseSpecial: true }));
            expect(server, doc).toEqual(await templateTokens(QUERY, doc));
        }
    });

    it("rank() is the sigmoid of the float64 head's logit over the template's tokens, not over [CLS] query [SEP] document [SEP]", async () => {
        const ref = await loadReferenceBert(file);
        const ectx = await model.createEmbeddingContext({ threads: 2 });
        const scores = await ectx.rank(QUERY, DOCS);
        const q = Array.from(await model.tokenize(QUERY, { addSpecial: false }));
        let apart = 0;
        for (let i = 0; i < DOCS.length; i++) {
            const expected = sigmoid(ref.rankLogit(await templateTokens(QUERY, DOCS[i]!)));
            expect(Math.abs(scores[i]! - expected), DOCS[i]).toBeLessThan(2e-3);
            const d = Array.from(await model.tokenize(DOCS[i]!, { addSpecial: false }));
            apart = Math.max(apart, Math.abs(expected - sigmoid(ref.rankLogit([101, ...q, 102, ...d, 102]))));
        }
        // the check above tells the two prompts apart: without the template the scores differ by far more than 2e-3
        expect(apart).toBeGreaterThan(2e-2);
        await ectx.dispose();
    });

    it("node-llama-cpp's rankAll on the same file (it fills the GGUF's template in too)", async () => {
        const p = await peer();
        const pm = await p.loadModel({ modelPath: file });
        const pctx = await pm.createRankingContext({ contextSize: 512, threads: 2 });
        const ectx = await model.createEmbeddingContext({ threads: 2 });
        const theirs = await pctx.rankAll(QUERY, DOCS);
        const ours = await ectx.rank(QUERY, DOCS);
        for (let i = 0; i < DOCS.length; i++) expect(Math.abs(ours[i]! - theirs[i]!), DOCS[i]).toBeLessThan(1e-3);
        await ectx.dispose();
        await pctx.dispose();
        await pm.dispose();
    });
});
