// node-llama-cpp 3.21.1, the peer: same llama.cpp commit, prebuilt CPU binary. Used as the
// reference in parity tests. One Llama instance per test file.
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

let llama: Promise<Llama> | undefined;

export function peer(): Promise<Llama> {
    // Its log is off: it reports vocab-only loads of the vocab files as failed tensor loads.
    llama ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.disabled, progressLogs: false });
    return llama;
}
