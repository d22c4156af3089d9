// node-llama-cpp 3.21.1, the peer: same llama.cpp commit, prebuilt CPU binary. Used as the
// reference in parity tests. One Llama instance per test file.
import { getLlama, type Llama } from "node-llama-cpp";

let llama: Promise<Llama> | undefined;

export function peer(): Promise<Llama> {
    llama ??= getLlama({ gpu: false, build: "never", logLevel: "error" as never, progressLogs: false } as never);
    return llama;
}
