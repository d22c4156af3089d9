// `llamafuse bench ...` in a source checkout: src/cli/bench.ts (the front the installed CLI
// carries) runs this file through tsx with the command's arguments. See bench/suites/command.ts.
import { benchCli } from "./suites/command.js";

await benchCli(process.argv.slice(2));
