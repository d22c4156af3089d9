// npm run bench:depth — the depth suite, llamafuse vs node-llama-cpp (see bench/suites/suites.ts).
// Flags as `llamafuse bench`: --quick, --json, --threads N, --out dir, --model file.gguf, --no-peer
import { benchMain } from "./suites/command.js";

await benchMain("depth", process.argv.slice(2));
