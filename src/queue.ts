/**
 * Runs async jobs one after another, in the order they were added. A context's forward,
 * sample, KV and state calls all go through one queue: llama.cpp never sees two at once,
 * and a caller who fires several calls without awaiting gets them in order.
 */
export class SerialQueue {
    private tail: Promise<unknown> = Promise.resolve();
    private pending = 0;

    run<T>(job: () => Promise<T> | T): Promise<T> {
        this.pending++;
        const result = this.tail.then(job);
        this.tail = result.then(
            () => this.pending--,
            () => this.pending--,
        );
        return result;
    }

    get size(): number {
        return this.pending;
    }

    /** Resolves when every job added so far has settled. */
    async drain(): Promise<void> {
        while (this.pending > 0) await this.tail;
    }
}

/** An abort flag shared with native code: JS stores 1, a worker thread polls it. */
export function abortFlag(signal?: AbortSignal): { flag: Int32Array; release: () => void } {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    if (!signal) return { flag, release: () => {} };
    if (signal.aborted) Atomics.store(flag, 0, 1);
    const onAbort = () => Atomics.store(flag, 0, 1);
    signal.addEventListener("abort", onAbort, { once: true });
    return { flag, release: () => signal.removeEventListener("abort", onAbort) };
}
