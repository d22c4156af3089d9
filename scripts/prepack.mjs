#!/usr/bin/env node
// npm pack / npm publish (prepack): copies the part of the pinned llama.cpp that the addon builds
// into vendor/llama.cpp, so that an install that has to build from source needs neither
// node-llama-cpp nor git nor network. postpack removes it again (scripts/postpack.mjs).
//
// The copy is PATCHED: deps/llama.cpp is prepared first (pinned commit + native/patches/*.patch),
// and copied as it is; vendor/llama.cpp/.llamafuse-source.json records the commit and the
// patches applied (the build checks the commit against llama.cpp.json). Shipping it patched means
// an install applies nothing and needs no `git apply`/`patch` on the user's machine.
//
// The subset: llama.cpp's top CMakeLists.txt, cmake/, include/, src/, common/ (chat templates,
// Jinja, json-schema-to-grammar: the addon links these), vendor/ (nlohmann json and the others
// llama.cpp's CMake adds, less the headers of its multimodal tools), the licences, and ggml with
// the backends a source build can enable (CPU, CUDA, RPC, BLAS), plus two small vocabulary files
// (models/: the synthetic presets' and the demo's); not its tools, tests, examples, other
// models, Python or docs.
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LLAMA_CPP_COMMIT, patchesDigest, prepareLlamaCpp, vendoredDir, vendoredStamp } from "./build-native.mjs";

const TOP = ["CMakeLists.txt", "LICENSE", "licenses", "cmake", "include", "src", "common", "vendor", "ggml"];
const GGML_BACKENDS = new Set(["ggml-cpu", "ggml-cuda", "ggml-rpc", "ggml-blas"]);
const VOCABS = ["ggml-vocab-llama-spm.gguf", "ggml-vocab-bert-bge.gguf"];

function keep(source, file) {
    const rel = path.relative(source, file).split(path.sep);
    const name = rel.at(-1);
    // nested .gitignore files would make npm drop files from the tarball
    if (name === ".gitignore" || name === ".git") return false;
    // header-only libraries only llama.cpp's multimodal tools include: their CMake targets
    // stay (llama.cpp's vendor/CMakeLists.txt adds them), their 4 MB of headers do not;
    // cpp-httplib is added only with LLAMA_BUILD_COMMON (its tools), which we never build here
    if (rel[0] === "vendor" && (rel[1] === "cpp-httplib" || (rel.length === 3 && /^(miniaudio|stb_image)\.h$/.test(name)))) return false;
    if (rel[0] === "ggml" && rel[1] === "src" && rel.length >= 3 && rel[2].startsWith("ggml-") && !rel[2].includes(".")) {
        return GGML_BACKENDS.has(rel[2]);
    }
    return true;
}

export function vendorLlamaCpp() {
    const source = prepareLlamaCpp();
    rmSync(vendoredDir, { recursive: true, force: true });
    for (const entry of TOP) {
        const from = path.join(source, entry);
        if (!existsSync(from)) throw new Error(`llamafuse: ${from} is missing from the prepared llama.cpp`);
        cpSync(from, path.join(vendoredDir, entry), { recursive: true, filter: (f) => keep(source, f) });
    }
    // the small vocabularies of the synthetic tiny presets (the demo's model, llamafuse/synth)
    mkdirSync(path.join(vendoredDir, "models"), { recursive: true });
    for (const vocab of VOCABS) cpSync(path.join(source, "models", vocab), path.join(vendoredDir, "models", vocab));
    const patches = readdirSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "native", "patches")).filter((f) => f.endsWith(".patch")).sort();
    const stamp = { commit: LLAMA_CPP_COMMIT, patched: true, patches, patchesDigest: patchesDigest() };
    writeFileSync(path.join(vendoredDir, vendoredStamp), JSON.stringify(stamp, null, 4) + "\n");
    console.log(`llamafuse: vendored llama.cpp ${LLAMA_CPP_COMMIT.slice(0, 8)} (${patches.length} patches applied) into ${path.relative(process.cwd(), vendoredDir) || vendoredDir}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    try {
        vendorLlamaCpp();
    } catch (err) {
        console.error(err instanceof Error ? err.message : err);
        process.exit(1);
    }
}
