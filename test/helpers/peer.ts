// node-llama-cpp 3.21.1, the peer: same llama.cpp commit, prebuilt CPU binary. Used as the
// reference in parity tests. One Llama instance per test file.
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

let llama: Promise<Llama> | undefined;

export function peer(): Promise<Llama> {
    // Its log is off: it reports vocab-only loads of the vocab files as failed tensor loads.
    llama ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.disabled, progressLogs: false });
    return llama;
}

/** node-llama-cpp's greedy continuation of each input (tokens incl. BOS), EOG excluded: n tokens at most. */
export async function peerGreedy(modelPath: string, inputs: number[][], n: number): Promise<number[][]> {
    const llama = await peer();
    const model = await llama.loadModel({ modelPath });
    const out: number[][] = [];
    for (const input of inputs) {
        const context = await model.createContext({ contextSize: 256, batchSize: 256, threads: 1 });
        const seq = context.getSequence();
        const got: number[] = [];
        for await (const t of seq.evaluate(input as never, { temperature: 0 })) {
            if (model.isEogToken(t)) break;
            got.push(t);
            if (got.length >= n) break;
        }
        out.push(got);
        await context.dispose();
    }
    await model.dispose();
    return out;
}
