// A small SVG writer for grouped horizontal bar charts with error bars: one
// block of bars per category (a workload), one bar per series (a backend).
// The axis is logarithmic when the values span more than a factor of 20, so
// that a 50x gap and a 1.2x gap are both readable on one chart.

export interface Series {
  name: string;
  color: string;
}

export interface Bar {
  value: number;
  low: number;
  high: number;
  /** Printed after the bar. */
  text: string;
}

export interface Category {
  label: string;
  /** One per series, null where that series has no figure. */
  bars: (Bar | null)[];
}

export interface Chart {
  title: string;
  subtitle: string;
  axisLabel: string;
  series: Series[];
  categories: Category[];
  /** A value drawn as a dashed line (1: the reference itself). */
  reference?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const px = (n: number): string => n.toFixed(1);

/** Ticks at 1, 2, 5 times powers of ten between lo and hi. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
    }
  }
  return ticks;
}

function linearTicks(hi: number): number[] {
  const raw = hi / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = 0; t <= hi * 1.0001; t += step) ticks.push(Number(t.toPrecision(6)));
  return ticks;
}

const tickText = (t: number): string => (t >= 1 ? String(t) : t.toPrecision(1));

export function barChart(chart: Chart): string {
  const labelW = 340;
  const plotW = 460;
  const textW = 150;
  const width = labelW + plotW + textW;
  const barH = 12;
  const barGap = 3;
  const catGap = 16;
  const top = 78;
  const nSeries = chart.series.length;
  const catH = nSeries * (barH + barGap) - barGap;

  const values = chart.categories.flatMap((c) => c.bars.flatMap((b) => (b ? [b.low, b.high, b.value] : [])))
    .filter((v) => v > 0 && Number.isFinite(v));
  const ref = chart.reference ?? 1;
  let lo = Math.min(ref, ...values);
  let hi = Math.max(ref, ...values);
  const log = hi / lo > 20;
  let ticks: number[];
  if (log) {
    lo = 10 ** (Math.floor(Math.log10(lo) * 2) / 2);
    hi = 10 ** (Math.ceil(Math.log10(hi) * 2) / 2);
    ticks = logTicks(lo, hi);
  } else {
    lo = 0;
    ticks = linearTicks(hi * 1.05);
    hi = ticks[ticks.length - 1];
  }
  const x = (v: number): number => labelW + plotW * (log ? Math.log(v / lo) / Math.log(hi / lo) : v / hi);

  const plotH = chart.categories.length * (catH + catGap);
  const height = top + plotH + 44;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" `
    + `font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">`);
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  parts.push(`<text x="10" y="20" font-size="15" font-weight="bold">${esc(chart.title)}</text>`);
  parts.push(`<text x="10" y="38" fill="#444">${esc(chart.subtitle)}</text>`);
  let lx = 10;
  for (const s of chart.series) {
    parts.push(`<rect x="${lx}" y="50" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 16}" y="60">${esc(s.name)}</text>`);
    lx += 26 + s.name.length * 7;
  }

  for (const t of ticks) {
    parts.push(`<line x1="${px(x(t))}" y1="${top - 6}" x2="${px(x(t))}" y2="${top + plotH - catGap / 2}" stroke="#ddd"/>`);
    parts.push(`<text x="${px(x(t))}" y="${top + plotH + 8}" text-anchor="middle" fill="#444">${tickText(t)}</text>`);
  }
  if (ref > lo && ref < hi) {
    parts.push(`<line x1="${px(x(ref))}" y1="${top - 6}" x2="${px(x(ref))}" y2="${top + plotH - catGap / 2}" stroke="#222" stroke-dasharray="4 3"/>`);
  }
  parts.push(`<text x="${labelW + plotW / 2}" y="${top + plotH + 26}" text-anchor="middle" fill="#222">`
    + `${esc(chart.axisLabel)}${log ? ' (log scale)' : ''}</text>`);

  chart.categories.forEach((c, ci) => {
    const y0 = top + ci * (catH + catGap);
    const words = c.label.split(' ');
    const lines: string[] = [''];
    for (const w of words) {
      if ((lines[lines.length - 1] + ' ' + w).length > 52) lines.push(w);
      else lines[lines.length - 1] = `${lines[lines.length - 1]} ${w}`.trim();
    }
    const ly = y0 + catH / 2 - (lines.length - 1) * 6.5 + 4;
    lines.forEach((l, i) => parts.push(`<text x="${labelW - 8}" y="${px(ly + i * 13)}" text-anchor="end">${esc(l)}</text>`));
    c.bars.forEach((b, si) => {
      const y = y0 + si * (barH + barGap);
      if (!b) return;
      const s = chart.series[si];
      const x0 = x(lo);
      const xv = Math.max(x(Math.max(b.value, lo)), x0 + 1);
      parts.push(`<rect x="${px(x0)}" y="${y}" width="${px(xv - x0)}" height="${barH}" fill="${s.color}">`
        + `<title>${esc(`${s.name}: ${b.text}`)}</title></rect>`);
      const el = x(Math.max(b.low, lo));
      const eh = x(Math.min(b.high, hi));
      const ym = y + barH / 2;
      if (eh - el > 1) {
        parts.push(`<path d="M${px(el)} ${ym}H${px(eh)}M${px(el)} ${y + 2}V${y + barH - 2}M${px(eh)} ${y + 2}V${y + barH - 2}" `
          + `stroke="#222" stroke-width="1" fill="none"/>`);
      }
      parts.push(`<text x="${px(Math.max(xv, eh) + 4)}" y="${y + barH - 2}" fill="#222">${esc(b.text)}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
