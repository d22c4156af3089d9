// The token sequence a reranker scores for (query, document), as llama.cpp's server builds it
// (format_prompt_rerank): the GGUF's own tokenizer.chat_template.rerank with {query} and
// {document} filled in where the model defines one, else
// [BOS] query [EOS] [SEP] document [EOS], each special token as the vocabulary asks for it.
import type { Model } from "../model.js";
import type { NativeEmbeddingCreated } from "./native.js";

/** What the native side reports about the vocabulary that the format needs. */
export type RankVocab = Pick<NativeEmbeddingCreated, "rerankTemplate" | "bos" | "eos" | "sep" | "addBos" | "addEos" | "addSep">;

const NO_TOKEN = -1;

export async function rankTokens(model: Model, v: RankVocab, query: string, document: string): Promise<Int32Array> {
    if (v.rerankTemplate !== null) {
        const prompt = v.rerankTemplate.replaceAll("{query}", query).replaceAll("{document}", document);
        return model.tokenize(prompt, { addSpecial: false, parseSpecial: true });
    }
    const [q, d] = await Promise.all([
        model.tokenize(query, { addSpecial: false }),
        model.tokenize(document, { addSpecial: false }),
    ]);
    // A vocabulary without EOS (WordPiece) ends segments with SEP.
    const eos = v.eos !== NO_TOKEN ? v.eos : v.sep;
    const out: number[] = [];
    if (v.addBos && v.bos !== NO_TOKEN) out.push(v.bos);
    out.push(...q);
    if (v.addEos && eos !== NO_TOKEN) out.push(eos);
    if (v.addSep && v.sep !== NO_TOKEN) out.push(v.sep);
    out.push(...d);
    if (v.addEos && eos !== NO_TOKEN) out.push(eos);
    return Int32Array.from(out);
}
