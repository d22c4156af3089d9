// The server's arrival gate (src/server/arrivals.ts): when a generation request that is ready
// to start waits, and that a burst starts in one turn of the event loop.
import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ArrivalGate, GATHER_MAX_MS, IDLE_GATHER_MS, idleWindowMs } from "../../src/server/arrivals.js";

/** A fake request and reply: the gate keys on request.raw and listens for reply.raw's close. */
function request() {
    const reply = { raw: new EventEmitter() };
    return { req: { raw: {} }, reply, close: () => reply.raw.emit("close") };
}

/** Which of the promises have settled, after the microtasks queued so far ran. */
async function settled(ps: Promise<void>[]): Promise<boolean[]> {
    const done = ps.map(() => false);
    ps.forEach((p, i) => void p.then(() => (done[i] = true)));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    return done;
}

describe("ArrivalGate", () => {
    beforeEach(() => {
        vi.useFakeTimers();
    });
    afterEach(() => {
        vi.useRealTimers();
    });

    it("a request alone on a busy pool starts at once", async () => {
        const gate = new ArrivalGate();
        const a = request();
        gate.arrived(a.req, a.reply);
        expect(await settled([gate.ready(a.req, 0)])).toEqual([true]);
        expect(gate.pending).toBe(0);
    });

    it("a request alone on an idle pool waits IDLE_GATHER_MS for others, and those that arrive meanwhile start with it", async () => {
        const gate = new ArrivalGate();
        const a = request(), b = request();
        gate.arrived(a.req, a.reply);
        const pa = gate.ready(a.req, IDLE_GATHER_MS);
        await vi.advanceTimersByTimeAsync(IDLE_GATHER_MS - 1);
        expect(await settled([pa])).toEqual([false]);
        // b arrives within the window: the window stays open until it is ready
        gate.arrived(b.req, b.reply);
        await vi.advanceTimersByTimeAsync(5);
        expect(await settled([pa])).toEqual([false]);
        const pb = gate.ready(b.req, IDLE_GATHER_MS);
        expect(await settled([pa, pb])).toEqual([true, true]);
    });

    it("with a window of 0 ms, a request alone on an idle pool starts at once", async () => {
        const gate = new ArrivalGate();
        const a = request();
        gate.arrived(a.req, a.reply);
        expect(await settled([gate.ready(a.req, 0)])).toEqual([true]);
    });

    it("an idle pool's window: the server's, at most a quarter of a mean step, none for steps under 4 ms", () => {
        expect(idleWindowMs(5, null)).toBe(5);
        expect(idleWindowMs(5, { steps: 0, stepNs: 0 })).toBe(5);
        expect(idleWindowMs(5, { steps: 10, stepNs: 10 * 40e6 })).toBe(5); // 40 ms steps
        expect(idleWindowMs(5, { steps: 10, stepNs: 10 * 8e6 })).toBe(2); // 8 ms steps
        expect(idleWindowMs(5, { steps: 10, stepNs: 10 * 0.3e6 })).toBe(0); // a tiny model
        expect(idleWindowMs(0, { steps: 10, stepNs: 10 * 40e6 })).toBe(0);
    });

    it("a ready request waits for the requests on their way, then all start together", async () => {
        const gate = new ArrivalGate();
        const rs = [request(), request(), request()];
        for (const r of rs) gate.arrived(r.req, r.reply);
        const p0 = gate.ready(rs[0]!.req, 0);
        const p1 = gate.ready(rs[1]!.req, 0);
        expect(await settled([p0, p1])).toEqual([false, false]);
        const p2 = gate.ready(rs[2]!.req, 0);
        expect(await settled([p0, p1, p2])).toEqual([true, true, true]);
    });

    it("a request that ends before it starts (an invalid body, a client gone) no longer holds the others", async () => {
        const gate = new ArrivalGate();
        const a = request(), b = request(), c = request();
        gate.arrived(a.req, a.reply);
        gate.arrived(b.req, b.reply);
        gate.arrived(c.req, c.reply);
        const pa = gate.ready(a.req, 0);
        b.close(); // its reply closed: a 400, or the connection dropped
        expect(await settled([pa])).toEqual([false]);
        gate.left(c.req);
        expect(await settled([pa])).toEqual([true]);
        expect(gate.pending).toBe(0);
    });

    it("the wait is bounded: a request that never becomes ready holds the others GATHER_MAX_MS at most", async () => {
        const gate = new ArrivalGate();
        const a = request(), slow = request();
        gate.arrived(a.req, a.reply);
        gate.arrived(slow.req, slow.reply);
        const pa = gate.ready(a.req, 0);
        await vi.advanceTimersByTimeAsync(GATHER_MAX_MS - 1);
        expect(await settled([pa])).toEqual([false]);
        await vi.advanceTimersByTimeAsync(1);
        expect(await settled([pa])).toEqual([true]);
        // the late one, when ready with nothing else on the way and the pool busy, goes at once
        expect(await settled([gate.ready(slow.req, 0)])).toEqual([true]);
    });
});
