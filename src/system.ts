import { binding } from "./binding.js";

/** The llama.cpp commit this build is pinned to (node-llama-cpp 3.21.1's bundle). */
export const LLAMA_CPP_COMMIT = "80fb11ac73e66d89eae2c6a91d8a77428fa733ed";

/** llama.cpp's system info line (CPU features the build uses). */
export function systemInfo(): string {
    return binding().systemInfo();
}
