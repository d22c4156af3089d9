// npm run bench:tokenize — the tokenize suite, llamafuse vs node-llama-cpp (see bench/suites/suites.ts).
// Flags as `llamafuse bench`: --quick, --json, --threads N, --out dir, --model file.gguf, --no-peer
import { benchMain } from "./suites/command.js";

await benchMain("tokenize", process.argv.slice(2));
