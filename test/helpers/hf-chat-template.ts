// Reference renderings of chat templates, the way Hugging Face's apply_chat_template does it:
// @huggingface/jinja (the JS port transformers.js uses), and Python's jinja2 sandbox with
// trim_blocks/lstrip_blocks, loopcontrols, tojson(ensure_ascii=False), raise_exception and
// strftime_now, when python3 with jinja2 is installed.
import { execFileSync } from "node:child_process";
import { Template } from "@huggingface/jinja";

export interface HfRenderInput {
    messages: unknown[];
    tools?: unknown[];
    add_generation_prompt: boolean;
    bos_token: string;
    eos_token: string;
    /** Time for strftime_now (ms since the epoch); @huggingface/jinja always uses the current time. */
    now: number;
    /** llama.cpp always passes this template variable (true unless told otherwise). */
    enable_thinking?: boolean;
}

/** @huggingface/jinja renders strftime_now() with the current time: pass now = Date.now(). */
export function renderHfJs(source: string, input: HfRenderInput): string {
    const { now: _now, ...vars } = input;
    return new Template(source).render(vars as never);
}

const PY = String.raw`
import sys, json, datetime
import jinja2, jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
req = json.load(sys.stdin)
def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
now = datetime.datetime.fromtimestamp(req["input"]["now"] / 1000)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
out = []
for src in req["sources"]:
    try:
        inp = dict(req["input"]); inp.pop("now")
        out.append({"ok": env.from_string(src).render(**inp)})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
json.dump(out, sys.stdout, ensure_ascii=False)
`;

let pythonOk: boolean | undefined;
/** True when python3 with jinja2 (HF's own engine) is installed here. */
export function hasPythonJinja(): boolean {
    if (pythonOk === undefined) {
        try {
            execFileSync("python3", ["-c", "import jinja2"], { stdio: "ignore" });
            pythonOk = true;
        } catch {
            pythonOk = false;
        }
    }
    return pythonOk;
}

/** Renders many templates with one input in one python3 process. */
export function renderHfPython(sources: string[], input: HfRenderInput): ({ ok: string } | { error: string })[] {
    const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const out = execFileSync("python3", ["-c", PY], { input: JSON.stringify({ sources, input }), env: { ...process.env, TZ }, maxBuffer: 64 << 20 });
    return JSON.parse(out.toString("utf8"));
}
