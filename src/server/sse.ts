// Server-sent events on the raw response, as the OpenAI API streams: `data: <json>\n\n` per
// chunk and `data: [DONE]\n\n` at the end. Writes respect backpressure: a client that reads
// slowly makes send() wait (and so pauses its own generation), and one that has gone away
// makes it return false at once instead of waiting for a drain that will never come.
import type { ServerResponse } from "node:http";

export class SseStream {
    readonly #res: ServerResponse;
    #closed = false;
    #corked = false;

    constructor(res: ServerResponse) {
        this.#res = res;
        res.on("close", () => (this.#closed = true));
    }

    /** Sends the headers (once, before the first event). */
    open(): void {
        this.#res.writeHead(200, {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            connection: "keep-alive",
            // Proxies (nginx) must not buffer the stream.
            "x-accel-buffering": "no",
        });
        this.#res.flushHeaders();
    }

    get closed(): boolean {
        return this.#closed || this.#res.destroyed;
    }

    /** Writes one event; false when the client has gone. */
    async send(data: unknown): Promise<boolean> {
        return this.#write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
    }

    async #write(text: string): Promise<boolean> {
        if (this.closed) return false;
        // Events written in one turn of the event loop leave in one packet: at thousands of
        // tokens per second, one write per token costs more than the tokens.
        if (!this.#corked) {
            this.#corked = true;
            this.#res.cork();
            setImmediate(() => {
                this.#corked = false;
                if (!this.#res.destroyed) this.#res.uncork();
            });
        }
        if (this.#res.write(text)) return true;
        await new Promise<void>((resolve) => {
            const done = () => {
                this.#res.off("drain", done);
                this.#res.off("close", done);
                resolve();
            };
            this.#res.on("drain", done);
            this.#res.on("close", done);
        });
        return !this.closed;
    }

    /** Sends [DONE] and ends the response. */
    async end(): Promise<void> {
        await this.#write("data: [DONE]\n\n");
        if (!this.closed) this.#res.end();
    }

    /** Ends the response at once (after an error event). */
    close(): void {
        if (!this.#res.writableEnded) this.#res.end();
    }
}

/**
 * An AbortSignal that fires when the client disconnects before the response is complete.
 * `res` "close" also fires after a normal end, so only an unfinished response counts.
 */
export function disconnectSignal(res: ServerResponse): { signal: AbortSignal; dispose: () => void } {
    const ac = new AbortController();
    const onClose = () => {
        if (!res.writableFinished) ac.abort(new Error("client disconnected"));
    };
    res.on("close", onClose);
    return { signal: ac.signal, dispose: () => res.off("close", onClose) };
}
