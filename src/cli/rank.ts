// `llamafuse rank <model> --query q [doc...] [--file docs.txt]`: one JSON line per document,
// {"index", "document", "score"}, in input order (sort with --sort).
import type { Command } from "commander";
import { action, CliError, openModel } from "./common.js";
import { contextFlags, gatherTexts, type EmbedFlags } from "./embed.js";

export function registerRank(program: Command): void {
    contextFlags(
        program
            .command("rank")
            .description("rerank documents against a query with a reranker model: one JSON line per document, {index, document, score}")
            .argument("<model>", "GGUF file of a reranker (a model with a classification head)")
            .argument("[document...]", "documents to score")
            .requiredOption("-q, --query <text>", "the query")
            .option("-f, --file <path>", "also score each non-empty line of this file (- for stdin)")
            .option("--sort", "most relevant first"),
    ).action(action(async (modelPath: string, args: string[], flags: EmbedFlags & { query: string; sort?: boolean }) => {
        const docs = await gatherTexts(args, flags.file);
        if (docs.length === 0) throw new CliError("no documents: pass them as arguments or with --file");
        const model = await openModel(modelPath, {}, true);
        try {
            const ectx = await model.createEmbeddingContext({ threads: flags.threads, contextSize: flags.contextSize, batchSize: flags.batchSize, pooling: "rank" });
            const scores = await ectx.rank(flags.query, docs, { truncate: !!flags.truncate });
            const rows = docs.map((document, index) => ({ index, document, score: scores[index]! }));
            if (flags.sort) rows.sort((a, b) => b.score - a.score);
            for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
            await ectx.dispose();
        } finally {
            await model.dispose();
        }
    }));
}
