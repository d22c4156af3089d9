// node-llama-cpp, the peer every benchmark row is measured against: the same llama.cpp
// commit, its prebuilt CPU binary. Loaded lazily so that a machine without it still runs
// llamafuse's side (the rows then say the peer is missing).
import type { Llama } from "node-llama-cpp";

export interface Peer {
    llama: Llama;
    dispose(): Promise<void>;
}

/** The peer, or null with the reason (not installed, no prebuilt binary for this machine). */
export async function loadPeer(): Promise<{ peer: Peer | null; note: string }> {
    try {
        // Its log is off: a failure still throws, and its loader prints scary lines for
        // vocab-only files that it then loads fine.
        const { getLlama } = await import("node-llama-cpp");
        const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: "disabled" as never });
        return { peer: { llama, dispose: () => llama.dispose() }, note: "node-llama-cpp CPU prebuilt" };
    } catch (err) {
        return { peer: null, note: `node-llama-cpp unavailable: ${(err as Error).message.split("\n")[0]}` };
    }
}

/** Deterministic token ids inside the vocabulary (skipping the first few special ids). */
export function benchTokens(n: number, vocab: number, seed = 1): number[] {
    let s = seed;
    return Array.from({ length: n }, () => {
        s = (s * 1103515245 + 12345) >>> 0;
        return 3 + (s % (vocab - 3));
    });
}
