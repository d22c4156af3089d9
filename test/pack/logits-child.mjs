// Child of test/pack/prebuilt-parity.test.ts: the logits of every position of a fixed prompt on
// `model`, computed by the addon in $LLAMAFUSE_ADDON (one per process), printed as one JSON line
// (base64 of the Float32Array rows, n_tokens x n_vocab) with which addon ran.
const [entry, model] = process.argv.slice(2);
const { loadModel, addonInfo } = await import(entry);
const m = await loadModel(model);
try {
    const ctx = await m.createContext({ contextSize: 128, threads: 1 });
    const tokens = await m.tokenize("Once upon a time, there was a little girl named Lily. She loved to play outside.");
    const out = await ctx.forward({ sequence: 0, tokens, logits: "all" });
    const f = new Float32Array(tokens.length * m.info.vocabSize);
    for (let i = 0; i < tokens.length; i++) f.set(out.logits(0, i), i * m.info.vocabSize);
    console.log(JSON.stringify({ addon: addonInfo(), n: tokens.length, vocab: m.info.vocabSize, logits: Buffer.from(f.buffer).toString("base64") }));
} finally {
    await m.dispose();
}
