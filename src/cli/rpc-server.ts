// `llamafuse rpc-server --host 127.0.0.1 --port P`: serves this machine's CPU backend over
// llama.cpp's RPC protocol, so that another process's loadModel(path, { rpcServers }) can put
// layers here. It runs until killed. The protocol has no authentication: the default host is
// loopback, and another address gets a warning.
import type { Command } from "commander";
import { startRpcServer } from "../rpc.js";
import { action, note } from "./common.js";
import { parseInteger, parsePositive } from "./options.js";

export function registerRpcServer(program: Command): void {
    program
        .command("rpc-server")
        .description("serve this machine's CPU backend to other llamafuse/llama.cpp processes (llama.cpp's RPC backend)")
        .option("--host <host>", "address to listen on", "127.0.0.1")
        .requiredOption("--port <port>", "port to listen on", parseInteger)
        .option("-t, --threads <n>", "compute threads (default: 4)", parsePositive)
        .action(action(async (flags: { host: string; port: number; threads?: number }) => {
            if (!["127.0.0.1", "localhost", "::1"].includes(flags.host)) {
                note(`warning: the RPC protocol has no authentication; anyone who reaches ${flags.host}:${flags.port} can use this machine`);
            }
            const { endpoint } = await startRpcServer({ host: flags.host, port: flags.port, threads: flags.threads });
            process.stdout.write(`listening on ${endpoint}\n`);
            // ggml's server runs on a native thread that does not keep Node's event loop alive.
            setInterval(() => {}, 1 << 30);
            const stop = () => process.exit(0);
            process.once("SIGINT", stop);
            process.once("SIGTERM", stop);
        }));
}
