// Generation requests that arrive together start together. Over HTTP a burst of requests
// reaches the pool one at a time: the event loop parses them in turn, and the first one's
// prompt starts at once, alone, while the compute threads (as many as the cores) take the
// CPU from the loop that is still parsing the others. They then join steps later, each
// burst member's prompt in a step of its own. (1B Q4_0 model, 8 requests sent together to a
// pool of 8 slots: in some rounds the first token of the first stream came at 64 ms and the
// others at 153-579 ms, one more prefill each; in others all eight came at ~350 ms. See
// test/native/server.test.ts.)
//
// The gate counts generation requests from their arrival (headers read) to their start, and
// holds a request that is ready to start while a batch window is open: then all start in one
// turn of the event loop, and the context's queue puts their prompts in one step. A window
// opens when a request is ready while others are on their way, or while the pool is idle:
// then it stays open at least a short while (the server's batch window, at most a quarter of
// a step: a straggler costs about one step, its own prefill; idleWindowMs), time for the
// loop (the compute threads are idle) to read what else arrived. It closes when no request
// is on its way (after that minimum), or at GATHER_MAX_MS whatever happens (a client sending
// its body slowly does not hold the others for long). A request that finds the pool busy and
// nobody on the way does not wait: it joins the running generations' next step anyway.

/** The longest a window stays open. */
export const GATHER_MAX_MS = 20;
/** How long a window opened on an idle pool stays open at least (the server's default). */
export const IDLE_GATHER_MS = 5;

/**
 * How long a request that finds the pool idle keeps a window open: the server's batch window,
 * but at most a quarter of the pool's mean step so far (a tiny model's whole request takes a
 * few ms); the whole window before any step has run.
 */
export function idleWindowMs(batchWindowMs: number, stats: { steps: number; stepNs: number } | null): number {
    if (!stats || stats.steps === 0) return batchWindowMs;
    const quarterStep = stats.stepNs / stats.steps / 4e6;
    return quarterStep < 1 ? 0 : Math.min(batchWindowMs, quarterStep);
}

/** A request on its way: fastify's request (its raw IncomingMessage is the key). */
interface Arrival {
    raw: object;
}

/** Its reply: the raw response closes when it is sent or the connection drops. */
interface ArrivalReply {
    raw: { once(event: "close", listener: () => void): unknown };
}

export class ArrivalGate {
    readonly #pending = new Set<object>();
    #waiting: (() => void)[] = [];
    #minUntil = 0;
    #maxTimer: ReturnType<typeof setTimeout> | null = null;
    #minTimer: ReturnType<typeof setTimeout> | null = null;

    /** Requests that have arrived and neither started nor ended. */
    get pending(): number {
        return this.#pending.size;
    }

    /** A generation request arrived (its headers are read; its body may not be). */
    arrived(request: Arrival, reply: ArrivalReply): void {
        this.#pending.add(request.raw);
        // whatever ends it before it starts (an invalid body, a client gone) takes it off the count
        reply.raw.once("close", () => this.left(request));
    }

    /**
     * The request is ready to start. `waitMs`: how long a window it opens stays open at least
     * (idleWindowMs when the pool runs no generation, else 0). Resolves when the request may
     * start (see above).
     */
    ready(request: Arrival, waitMs: number): Promise<void> {
        this.#pending.delete(request.raw);
        if (this.#waiting.length === 0) {
            if (this.#pending.size === 0 && waitMs <= 0) return Promise.resolve();
            this.#minUntil = performance.now() + Math.max(0, waitMs);
            this.#maxTimer = setTimeout(() => this.#openAll(), GATHER_MAX_MS);
        }
        const started = new Promise<void>((resolve) => this.#waiting.push(resolve));
        this.#check();
        return started;
    }

    /** The request ended without starting. */
    left(request: Arrival): void {
        if (this.#pending.delete(request.raw)) this.#check();
    }

    /** Route options that count a route's requests from their arrival. */
    hooks() {
        return {
            onRequest: async (request: Arrival, reply: ArrivalReply) => this.arrived(request, reply),
            onResponse: async (request: Arrival) => this.left(request),
        };
    }

    // Opens the window's requests if nobody is on the way and its minimum time has passed.
    #check(): void {
        if (this.#waiting.length === 0 || this.#pending.size > 0) return;
        const rest = this.#minUntil - performance.now();
        if (rest > 0) {
            this.#minTimer ??= setTimeout(() => {
                this.#minTimer = null;
                this.#check();
            }, Math.ceil(rest));
            return;
        }
        this.#openAll();
    }

    #openAll(): void {
        if (this.#maxTimer) clearTimeout(this.#maxTimer);
        if (this.#minTimer) clearTimeout(this.#minTimer);
        this.#maxTimer = this.#minTimer = null;
        const waiting = this.#waiting;
        this.#waiting = [];
        for (const resolve of waiting) resolve();
    }
}
