import { readFileSync } from "node:fs";
import path from "node:path";
import { binding, packageRoot } from "./binding.js";

/**
 * The llama.cpp commit this build is pinned to, from llama.cpp.json at the package root: the one
 * file that names it (the native build, bench/gpu/prepare.sh and this module all read it).
 */
export const LLAMA_CPP_COMMIT: string = JSON.parse(readFileSync(path.join(packageRoot, "llama.cpp.json"), "utf8")).commit;

/** llama.cpp's system info line (CPU features the build uses). */
export function systemInfo(): string {
    return binding().systemInfo();
}
