// llama.cpp's RPC backend (GGML_RPC, from the pinned tree): startRpcServer() serves this
// machine's CPU backend to other processes; loadModel(path, { rpcServers }) puts a model's
// layers on those servers' devices. Nothing of our own goes over the wire. The servers have
// no authentication: keep them on a private network.
import { connect, createServer } from "node:net";
import { binding } from "./binding.js";
import { LlamaError } from "./errors.js";
import { invalidOption, is } from "./validate.js";

export interface NativeRpcBinding {
    rpcStartServer(endpoint: string, threads: number): void;
    hasRpc: boolean;
}

export interface RpcServerOptions {
    /** Address to listen on. @default "127.0.0.1" */
    host?: string;
    /** Port to listen on. */
    port: number;
    /** CPU threads that compute for clients. @default 4 */
    threads?: number;
}

/** ggml's endpoint spelling, "host:port" (IPv6 hosts in brackets). */
export function parseEndpoint(name: string, s: unknown): { host: string; port: number } {
    const m = is.string(s) ? /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(s) : null;
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw invalidOption(name, 'an RPC endpoint "host:port"', s);
    return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** Resolves when a TCP connection to host:port opens, rejects when it cannot within timeoutMs. */
function probe(host: string, port: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
        const socket = connect({ host, port });
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error("timed out"));
        }, timeoutMs);
        socket.once("connect", () => {
            clearTimeout(timer);
            socket.end();
            resolve();
        });
        socket.once("error", (err) => {
            clearTimeout(timer);
            reject(err);
        });
    });
}

/**
 * Checks that every RPC server answers. llama.cpp's RPC client aborts the whole process when
 * it cannot connect, so loadModel() asks first and turns a dead endpoint into an error.
 */
export async function checkRpcServers(endpoints: string[], timeoutMs = 5000): Promise<void> {
    await Promise.all(endpoints.map(async (e, i) => {
        const { host, port } = parseEndpoint(`rpcServers[${i}]`, e);
        try {
            await probe(host, port, timeoutMs);
        } catch (err) {
            throw new LlamaError("ERR_INVALID_OPTION", `cannot reach the RPC server at ${e}: ${(err as Error).message}`);
        }
    }));
}

function portFree(host: string, port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const s = createServer();
        s.once("error", () => resolve(false));
        s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
    });
}

/**
 * Serves this machine's CPU backend over llama.cpp's RPC protocol, for the rest of the
 * process's life (ggml's server has no stop). Resolves once the port answers.
 */
export async function startRpcServer(options: RpcServerOptions): Promise<{ endpoint: string }> {
    const host = options.host ?? "127.0.0.1";
    if (!is.string(host) || host.length === 0) throw invalidOption("host", "a host name or address", host);
    const port = options.port;
    if (!is.integer(port) || port < 1 || port > 65535) throw invalidOption("port", "an integer between 1 and 65535", port);
    const threads = options.threads ?? 4;
    if (!is.integer(threads) || threads < 1 || threads > 512) throw invalidOption("threads", "an integer between 1 and 512", threads);
    const b = binding() as unknown as Partial<NativeRpcBinding>;
    if (!b.hasRpc || !b.rpcStartServer) throw new LlamaError("ERR_UNSUPPORTED", "this build has no RPC backend (GGML_RPC)");
    if (!(await portFree(host, port))) throw new LlamaError("ERR_INVALID_OPTION", `cannot listen on ${host}:${port}: the address is in use or not available`);
    const endpoint = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    b.rpcStartServer(endpoint, threads);
    const t0 = Date.now();
    for (;;) {
        try {
            await probe(host, port, 1000);
            return { endpoint };
        } catch {
            if (Date.now() - t0 > 10_000) throw new LlamaError("ERR_NATIVE", `the RPC server did not open ${endpoint} (see stderr)`);
            await new Promise((r) => setTimeout(r, 50));
        }
    }
}
