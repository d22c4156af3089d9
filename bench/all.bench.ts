// npm run bench — every suite, llamafuse vs node-llama-cpp (see bench/suites/suites.ts).
// Flags as `llamafuse bench`: --quick, --json, --threads N, --out dir, --model file.gguf, --no-peer
import { benchMain } from "./suites/command.js";

await benchMain("all", process.argv.slice(2));
