// A line chart of tokens/s against context depth, one line per runtime, as a standalone SVG
// (no dependencies: a few lines of markup read anywhere, diff well and need no renderer).
export interface ChartSeries {
    name: string;
    /** [depth, tokens/s]; null values are skipped. */
    points: [number, number | null][];
}

const COLORS = ["#d62728", "#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd"];

function esc(s: string): string {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A "nice" axis maximum and tick step covering `max`. */
function niceScale(max: number, ticks = 5): { top: number; step: number } {
    if (!(max > 0)) return { top: 1, step: 0.2 };
    const raw = max / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
    return { top: Math.ceil(max / step) * step, step };
}

function depthLabel(d: number): string {
    return d >= 1024 && d % 1024 === 0 ? `${d / 1024}K` : String(d);
}

export function depthChartSvg(title: string, subtitle: string, series: ChartSeries[]): string {
    const W = 720, H = 420, L = 70, R = 190, T = 60, B = 50;
    const pw = W - L - R, ph = H - T - B;
    const depths = [...new Set(series.flatMap((s) => s.points.map(([d]) => d)))].sort((a, b) => a - b);
    const maxY = Math.max(0, ...series.flatMap((s) => s.points.map(([, v]) => v ?? 0)));
    const { top, step } = niceScale(maxY);
    const maxX = Math.max(1, depths[depths.length - 1] ?? 1);
    // Depth is drawn on a linear axis: the cost of attention grows linearly with it.
    const x = (d: number) => L + (d / maxX) * pw;
    const y = (v: number) => T + ph - (v / top) * ph;
    const out: string[] = [];
    out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
    out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
    out.push(`<text x="${L}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
    out.push(`<text x="${L}" y="42" fill="#555">${esc(subtitle)}</text>`);
    for (let v = 0; v <= top + step / 2; v += step) {
        out.push(`<line x1="${L}" x2="${L + pw}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e5e5"/>`);
        out.push(`<text x="${L - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${+v.toFixed(6)}</text>`);
    }
    for (const d of depths) {
        out.push(`<line x1="${x(d).toFixed(1)}" x2="${x(d).toFixed(1)}" y1="${T}" y2="${T + ph}" stroke="#f0f0f0"/>`);
        out.push(`<text x="${x(d).toFixed(1)}" y="${T + ph + 18}" text-anchor="middle">${depthLabel(d)}</text>`);
    }
    out.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${T + ph}" stroke="#333"/>`);
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${T + ph}" y2="${T + ph}" stroke="#333"/>`);
    out.push(`<text x="${L + pw / 2}" y="${H - 10}" text-anchor="middle">context depth (tokens in the KV cache)</text>`);
    out.push(`<text transform="translate(18 ${T + ph / 2}) rotate(-90)" text-anchor="middle">generation, tokens/s</text>`);
    series.forEach((s, i) => {
        const color = COLORS[i % COLORS.length]!;
        const pts = s.points.filter((p): p is [number, number] => p[1] !== null).sort((a, b) => a[0] - b[0]);
        if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([d, v]) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`);
        for (const [d, v] of pts) {
            out.push(`<circle cx="${x(d).toFixed(1)}" cy="${y(v).toFixed(1)}" r="4" fill="${color}"><title>${esc(s.name)} at ${d}: ${v.toFixed(1)} tokens/s</title></circle>`);
        }
        const ly = T + 10 + i * 20;
        out.push(`<line x1="${L + pw + 20}" x2="${L + pw + 44}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
        out.push(`<text x="${L + pw + 50}" y="${ly + 4}">${esc(s.name)}</text>`);
    });
    out.push("</svg>");
    return out.join("\n") + "\n";
}
