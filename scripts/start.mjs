// `npm start`: the demo REPL with no download (see src/cli/demo.ts for which model it uses).
// `npm start -- model.gguf [flags]` runs it on another model. Builds dist/ first if a
// checkout has not been built yet (npm ci's prepare step normally has).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "dist", "cli", "index.js");
if (!existsSync(cli)) {
    process.stderr.write("building dist/ (tsc) ...\n");
    execFileSync(process.execPath, [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", path.join(root, "tsconfig.json")], { stdio: "inherit" });
}
process.argv.splice(2, 0, "demo");
await import(pathToFileURL(cli).href);
