// GET /metrics in Prometheus text format (version 0.0.4): request counts by route and
// status, tokens in and out, time to first token and request durations, and the pool's
// slots and queue at scrape time.
import type { Pool } from "../pool.js";

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
    const keys = Object.keys(labels);
    if (keys.length === 0) return "";
    return `{${keys.map((k) => `${k}="${labels[k]!.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",")}}`;
}

export class Metrics {
    readonly #started = Date.now();
    #requests = new Map<string, number>();
    #counters = { promptTokens: 0, cachedTokens: 0, completionTokens: 0, disconnects: 0 };
    #ttft = { sum: 0, count: 0 };
    #duration = { sum: 0, count: 0 };

    request(route: string, status: number): void {
        const key = `${route}\u0000${status}`;
        this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    }

    tokens(prompt: number, cached: number, completion: number): void {
        this.#counters.promptTokens += prompt;
        this.#counters.cachedTokens += cached;
        this.#counters.completionTokens += completion;
    }

    firstToken(seconds: number): void {
        this.#ttft.sum += seconds;
        this.#ttft.count++;
    }

    finished(seconds: number): void {
        this.#duration.sum += seconds;
        this.#duration.count++;
    }

    disconnected(): void {
        this.#counters.disconnects++;
    }

    render(pool: Pool): string {
        const lines: string[] = [];
        const metric = (name: string, type: "counter" | "gauge" | "summary", help: string, samples: [Labels, number][], suffixes?: string[]) => {
            lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
            samples.forEach(([labels, v], i) => lines.push(`${name}${suffixes?.[i] ?? ""}${labelText(labels)} ${Number.isFinite(v) ? v : 0}`));
        };
        const reqs: [Labels, number][] = [...this.#requests].map(([k, v]) => {
            const [route, status] = k.split("\u0000") as [string, string];
            return [{ route, status }, v];
        });
        metric("llamafuse_http_requests_total", "counter", "HTTP requests answered, by route and status", reqs);
        metric("llamafuse_prompt_tokens_total", "counter", "Prompt tokens of completed requests", [[{}, this.#counters.promptTokens]]);
        metric("llamafuse_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache (not evaluated again)", [[{}, this.#counters.cachedTokens]]);
        metric("llamafuse_completion_tokens_total", "counter", "Generated tokens", [[{}, this.#counters.completionTokens]]);
        metric("llamafuse_client_disconnects_total", "counter", "Requests whose client left before the response was complete (generation aborted)", [[{}, this.#counters.disconnects]]);
        metric("llamafuse_time_to_first_token_seconds", "summary", "From request to the first generated token", [[{}, this.#ttft.sum], [{}, this.#ttft.count]], ["_sum", "_count"]);
        metric("llamafuse_request_duration_seconds", "summary", "Generation requests, from arrival to the last token", [[{}, this.#duration.sum], [{}, this.#duration.count]], ["_sum", "_count"]);
        const s = pool.stats();
        metric("llamafuse_slots", "gauge", "Slots (sequences) in the pool", [[{}, s.slots.length]]);
        metric("llamafuse_slots_busy", "gauge", "Slots generating now", [[{}, s.slots.filter((x) => x.busy).length]]);
        metric("llamafuse_queue_length", "gauge", "Requests waiting for a slot", [[{}, s.queued]]);
        metric("llamafuse_requests_rejected_total", "counter", "Requests refused because the queue was full", [[{}, s.rejected]]);
        metric("llamafuse_kv_cached_tokens", "gauge", "Tokens held in the slots' caches", [[{}, s.slots.reduce((a, x) => a + x.cachedTokens, 0)]]);
        metric("llamafuse_uptime_seconds", "gauge", "Seconds since the server started", [[{}, (Date.now() - this.#started) / 1000]]);
        return lines.join("\n") + "\n";
    }
}
