// Prebuilt addons against this checkout's source build: the logits of every position of a
// prompt on real models, each addon in its own process. Every prebuilt level this CPU can run is
// compared (npm run build:prebuilt makes them; without prebuilds/ the test skips, visibly). The
// levels compute with other instruction sets than the source build (which has this machine's
// own), so the logits agree to float rounding, not bit for bit: the bound is relative to the
// logits' range, and every position's most likely token must be the same.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { cpuinfoFlags } from "../../src/prebuilt.js";
import { MODELS, repoRoot } from "../helpers/models.js";
import { cleanEnv, devAddon, repoManifest, repoPrebuilds } from "./pack-helpers.js";

const manifest = repoManifest();
const entry = pathToFileURL(path.join(repoRoot, "dist", "index.js")).href;
const flags = cpuinfoFlags();
const levels = manifest ? manifest.variants.filter((v) => v.cpuFlags.every((f) => flags.has(f))) : [];
const models = [MODELS.stories260K, MODELS.tiny656K].filter((m) => existsSync(m));
const ready = levels.length > 0 && existsSync(devAddon) && models.length > 0 && existsSync(path.join(repoRoot, "dist", "index.js"));
if (!ready) console.warn("prebuilt parity tests SKIPPED: no prebuilds/ for this platform (npm run build:prebuilt), no source build, or no models");

/**
 * Max |a-b| over the logits' range (max - min of the reference), per the whole matrix. Measured
 * here against a source build with this Sapphire Rapids' instruction sets: icelake 0 (bit for bit),
 * haswell 2.9e-6; x64 6.7e-3 on the Q8_0 model (its scalar path quantizes the activations to
 * q8_0 with other rounding than the SIMD paths), 2.3e-6 on the f32 one.
 */
const REL_TOL: Record<string, number> = { x64: 1.5e-2 };
const REL_TOL_SIMD = 2e-3;

function logits(addon: string, model: string): { variant: string | null; n: number; vocab: number; data: Float32Array } {
    const r = spawnSync(process.execPath, [path.join(repoRoot, "test", "pack", "logits-child.mjs"), entry, model], {
        env: cleanEnv({ LLAMAFUSE_ADDON: addon }),
        encoding: "utf8",
        maxBuffer: 256 << 20,
        timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`logits child failed (${r.status ?? r.signal}): ${r.stderr}`);
    const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    const b = Buffer.from(j.logits, "base64");
    return { variant: j.addon.variant, n: j.n, vocab: j.vocab, data: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) };
}

function argmax(a: Float32Array, from: number, n: number): number {
    let best = from;
    for (let i = from; i < from + n; i++) if (a[i]! > a[best]!) best = i;
    return best - from;
}

describe.runIf(ready).each(models.map((m) => [path.basename(m), m] as const))("prebuilt levels vs the source build on %s", (_name, model) => {
    it.each(levels.map((l) => [l.name, l.file] as const))("%s: same logits (to rounding), same most likely token at every position", (name, file) => {
        const ref = logits(devAddon, model);
        const got = logits(path.join(repoPrebuilds, file), model);
        expect(got.variant).toBe(name);
        expect([got.n, got.vocab]).toEqual([ref.n, ref.vocab]);
        let lo = Infinity, hi = -Infinity, maxDiff = 0;
        for (let i = 0; i < ref.data.length; i++) {
            lo = Math.min(lo, ref.data[i]!);
            hi = Math.max(hi, ref.data[i]!);
            maxDiff = Math.max(maxDiff, Math.abs(ref.data[i]! - got.data[i]!));
        }
        console.log(`${path.basename(model)} ${name}: max |logit diff| ${maxDiff.toExponential(2)} over a range of ${(hi - lo).toFixed(2)}`);
        expect(Number.isFinite(maxDiff)).toBe(true);
        expect(maxDiff).toBeLessThanOrEqual((REL_TOL[name] ?? REL_TOL_SIMD) * (hi - lo));
        for (let t = 0; t < ref.n; t++) expect(argmax(got.data, t * ref.vocab, ref.vocab), `position ${t}`).toBe(argmax(ref.data, t * ref.vocab, ref.vocab));
    });
});
