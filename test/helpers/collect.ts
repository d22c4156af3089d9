// Reads a generation to its end: the tokens it gave and their text.
export async function collect(it: AsyncIterable<{ token: number; text: string }>): Promise<{ tokens: number[]; text: string }> {
    const tokens: number[] = [];
    let text = "";
    for await (const s of it) {
        tokens.push(s.token);
        text += s.text;
    }
    return { tokens, text };
}
