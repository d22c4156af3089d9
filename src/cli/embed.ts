// `llamafuse embed <model> [text...] [--file lines.txt]`: one JSON line per text on stdout,
// {"index", "text", "embedding"}, in input order (texts from arguments, then the file's lines).
import { readFile } from "node:fs/promises";
import { Option, type Command } from "commander";
import type { EmbeddingContextOptions } from "../embed/index.js";
import { action, CliError, note, openModel } from "./common.js";
import { parsePositive } from "./options.js";

export interface EmbedFlags {
    file?: string;
    threads?: number;
    contextSize?: number;
    batchSize?: number;
    pooling?: EmbeddingContextOptions["pooling"];
    normalize?: EmbeddingContextOptions["normalize"];
    truncate?: boolean;
}

/** Texts from the arguments, then one per non-empty line of --file ("-" reads stdin). */
export async function gatherTexts(args: string[], file: string | undefined): Promise<string[]> {
    const texts = [...args];
    if (file !== undefined) {
        const content = file === "-" ? await readStdin() : await readFile(file, "utf8");
        texts.push(...content.split(/\r?\n/).filter((l) => l.trim() !== ""));
    }
    return texts;
}

async function readStdin(): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
}

export function contextFlags(program: Command): Command {
    return program
        .option("-t, --threads <n>", "compute threads", parsePositive)
        .option("-c, --context-size <n>", "most tokens per text", parsePositive)
        .option("-b, --batch-size <n>", "most tokens per decode (texts are packed up to it)", parsePositive)
        .option("--truncate", "cut texts longer than the context instead of failing");
}

export function registerEmbed(program: Command): void {
    contextFlags(
        program
            .command("embed")
            .description("sentence embeddings: one JSON line per text, {index, text, embedding}")
            .argument("<model>", "GGUF file of an embedding model")
            .argument("[text...]", "texts to embed")
            .option("-f, --file <path>", "also embed each non-empty line of this file (- for stdin)"),
    )
        .addOption(new Option("--pooling <type>", "pooling (default: the model's)").choices(["mean", "cls", "last", "none"]))
        .addOption(new Option("--normalize <mode>", "vector normalization").choices(["l2", "none"]).default("l2"))
        .action(action(async (modelPath: string, args: string[], flags: EmbedFlags) => {
            const texts = await gatherTexts(args, flags.file);
            if (texts.length === 0) throw new CliError("no texts: pass them as arguments or with --file");
            const model = await openModel(modelPath, {}, true);
            try {
                const ectx = await model.createEmbeddingContext({
                    threads: flags.threads, contextSize: flags.contextSize, batchSize: flags.batchSize, pooling: flags.pooling, normalize: flags.normalize,
                });
                const started = performance.now();
                const vectors = await ectx.embed(texts, { truncate: !!flags.truncate });
                const seconds = (performance.now() - started) / 1000;
                for (let i = 0; i < texts.length; i++) {
                    process.stdout.write(JSON.stringify({ index: i, text: texts[i], embedding: Array.from(vectors[i]!) }) + "\n");
                }
                note(`${texts.length} text${texts.length === 1 ? "" : "s"}, ${ectx.dimensions} dimensions (pooling ${ectx.pooling}), ${(texts.length / seconds).toFixed(1)} texts/s`);
                await ectx.dispose();
            } finally {
                await model.dispose();
            }
        }));
}
