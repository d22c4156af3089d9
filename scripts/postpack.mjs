#!/usr/bin/env node
// npm pack / npm publish (postpack): removes vendor/llama.cpp, which prepack copied for the tarball
// only (a development checkout builds deps/llama.cpp).
import { rmSync } from "node:fs";
import { vendoredDir } from "./build-native.mjs";

rmSync(vendoredDir, { recursive: true, force: true });
