// npm run bench:depth — the depth suite, llamafuse vs node-llama-cpp (see src/bench/suites.ts).
// Flags as `llamafuse bench`: --quick, --json, --threads N, --out dir, --model file.gguf, --no-peer
import { benchMain } from "../src/cli/bench.js";

await benchMain("depth", process.argv.slice(2));
