// Child process of test/pack: loads llamafuse from `entry` (the bare name "llamafuse", resolved
// from this file's folder, which the test puts in the installing project; or a file URL), generates
// greedily on `model`, and prints one JSON line: the tokens, the text and which addon ran.
const [entry, model] = process.argv.slice(2);
const { loadModel, addonInfo } = await import(entry);
const m = await loadModel(model);
try {
    const ctx = await m.createContext({ contextSize: 256, threads: 1 });
    const tokens = [];
    let text = "";
    for await (const step of ctx.generate("Once upon a time", { maxTokens: 24, temperature: 0 })) {
        tokens.push(step.token);
        text += step.text;
    }
    console.log(JSON.stringify({ tokens, text, addon: addonInfo() }));
} finally {
    await m.dispose();
}
