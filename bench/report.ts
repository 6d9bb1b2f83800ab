// The report of a run: results.json (every sample, the machine, every
// version), results.md (a table per group: absolute figures, then costs
// relative to raw and VEFS against the best peer), and one SVG per group.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from './machine.js';
import { cost, summarize, type Summary } from './stats.js';
import { barChart, type Series } from './svg.js';
import type { Better, Sizes } from './types.js';

export interface Sample {
  run: number;
  value: number;
  notes?: Record<string, unknown>;
}

export interface WorkloadResult {
  id: string;
  title: string;
  unit: string;
  better: Better;
  cold: boolean;
  mounts: number;
  /** Samples per backend id. */
  samples: Record<string, Sample[]>;
}

export interface GroupResult {
  id: string;
  title: string;
  method: string;
  skipped?: string;
  workloads: WorkloadResult[];
}

export interface BackendInfo {
  id: string;
  kind: 'limit' | 'peer' | 'vefs';
  how: string;
  version?: string;
  skipped?: string;
}

export interface BenchResult {
  tool: 'vefs bench';
  format: 1;
  quick: boolean;
  runs: number;
  started: string;
  finished: string;
  seconds: number;
  /** The host's load averages (1, 5, 15 min) when the run started and ended: other work perturbs the figures. */
  loadavg: { start: number[]; end: number[] };
  sizes: Sizes;
  machine: Machine;
  template: { realEntries: number; toolchainFiles: number; tree: string; treeEntries: number };
  backends: BackendInfo[];
  groups: GroupResult[];
}

const COLORS: Record<string, string> = {
  raw: '#8c8c8c', overlayfs: '#4c78a8', 'fuse-overlayfs': '#f58518', 'unionfs-fuse': '#54a24b', 'vefs-kernel': '#e45756', 'vefs-fuse-native': '#b279a2',
};
const PALETTE = ['#72b7b2', '#eeca3b', '#9d755d', '#ff9da6'];

/** A workload's figures, summarized, with what its ratios compare against. */
export interface Compared {
  workload: WorkloadResult;
  summaries: Map<string, Summary>;
  /** The raw directory's median, if raw ran. */
  raw?: number;
  /** The best peer (overlayfs, fuse-overlayfs, unionfs-fuse) by median, if any ran. */
  best?: { id: string; median: number };
}

export function compare(w: WorkloadResult, backends: BackendInfo[]): Compared {
  const summaries = new Map<string, Summary>();
  for (const [id, samples] of Object.entries(w.samples)) {
    if (samples.length > 0) summaries.set(id, summarize(samples.map((s) => s.value)));
  }
  let best: Compared['best'];
  for (const b of backends.filter((x) => x.kind === 'peer')) {
    const s = summaries.get(b.id);
    if (s && (!best || cost(s.median, best.median, w.better) < 1)) best = { id: b.id, median: s.median };
  }
  return { workload: w, summaries, raw: summaries.get('raw')?.median, best };
}

export const figure = (v: number): string => {
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
};

const times = (r: number): string => `×${r >= 10 ? r.toFixed(0) : r.toFixed(2)}`;
const arrow = (b: Better): string => (b === 'higher' ? '↑' : '↓');

/** The VEFS backends that ran (one per binding). */
const vefsIds = (r: BenchResult): string[] => r.backends.filter((b) => b.kind === 'vefs' && !b.skipped).map((b) => b.id);
const ran = (r: BenchResult): BackendInfo[] => r.backends.filter((b) => !b.skipped);

function groupMarkdown(r: BenchResult, g: GroupResult): string {
  const lines = [`## ${g.title} (\`${g.id}\`)`, '', g.method, ''];
  if (g.skipped) return [...lines, `**Skipped:** ${g.skipped}.`, ''].join('\n');
  const bs = ran(r);
  const vefs = vefsIds(r);
  lines.push(`![${g.title}](${g.id}.svg)`, '');
  lines.push(`| workload | unit | ${bs.map((b) => b.id).join(' | ')} |`, `|---|---|${bs.map(() => '---:').join('|')}|`);
  const compared = g.workloads.map((w) => compare(w, r.backends));
  for (const c of compared) {
    const cells = bs.map((b) => {
      const s = c.summaries.get(b.id);
      return s ? `${figure(s.median)} ±${(s.spread * 100).toFixed(0)}%` : '–';
    });
    lines.push(`| ${c.workload.title} | ${c.workload.unit} ${arrow(c.workload.better)} | ${cells.join(' | ')} |`);
  }
  lines.push('', `Cost relative to raw (×1: as fast as the raw directory; ×2: twice the time, or half the throughput), and VEFS against the best peer:`, '');
  const vefsCols = vefs.map((v) => `${v} ÷ best peer`);
  lines.push(`| workload | ${bs.map((b) => b.id).join(' | ')} | ${vefsCols.join(' | ')} |`,
    `|---|${bs.map(() => '---:').join('|')}|${vefs.map(() => '---').join('|')}|`);
  for (const c of compared) {
    const cells = bs.map((b) => {
      const s = c.summaries.get(b.id);
      return s && c.raw !== undefined ? times(cost(s.median, c.raw, c.workload.better)) : '–';
    });
    const vs = vefs.map((v) => {
      const s = c.summaries.get(v);
      return s && c.best ? `${times(cost(s.median, c.best.median, c.workload.better))} (${c.best.id})` : '–';
    });
    lines.push(`| ${c.workload.id} | ${cells.join(' | ')} | ${vs.join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

/** Every workload where a VEFS backend and a peer ran: VEFS's cost relative to the best peer, worst first. */
export function gaps(r: BenchResult): { group: string; workload: WorkloadResult; vefs: string; best: string; ratio: number }[] {
  const out = [];
  for (const g of r.groups) {
    for (const w of g.workloads) {
      const c = compare(w, r.backends);
      for (const v of vefsIds(r)) {
        const s = c.summaries.get(v);
        if (s && c.best) out.push({ group: g.id, workload: w, vefs: v, best: c.best.id, ratio: cost(s.median, c.best.median, w.better) });
      }
    }
  }
  return out.sort((a, b) => b.ratio - a.ratio);
}

function summaryMarkdown(r: BenchResult): string {
  const vefs = vefsIds(r);
  const lines = ['## Summary: VEFS, the best peer and raw', '',
    `| group | workload | unit | raw | best peer | ${vefs.map((v) => `${v} | ${v} ÷ best peer | ${v} ÷ raw`).join(' | ')} |`,
    `|---|---|---|---:|---|${vefs.map(() => '---:|---:|---:').join('|')}|`];
  for (const g of r.groups) {
    for (const w of g.workloads) {
      const c = compare(w, r.backends);
      if (!vefs.some((v) => c.summaries.has(v))) continue;
      const cells = vefs.map((v) => {
        const s = c.summaries.get(v);
        if (!s) return '– | – | –';
        const vb = c.best ? times(cost(s.median, c.best.median, w.better)) : '–';
        const vr = c.raw !== undefined ? times(cost(s.median, c.raw, w.better)) : '–';
        return `${figure(s.median)} | ${vb} | ${vr}`;
      });
      const raw = c.raw !== undefined ? figure(c.raw) : '–';
      const best = c.best ? `${figure(c.best.median)} (${c.best.id})` : '–';
      lines.push(`| ${g.id} | ${w.id} | ${w.unit} ${arrow(w.better)} | ${raw} | ${best} | ${cells.join(' | ')} |`);
    }
  }
  for (const v of vefs) {
    const worst = gaps(r).filter((x) => x.vefs === v).slice(0, 3);
    if (worst.length === 0) continue;
    lines.push('', `Largest gaps of ${v} to the best peer:`, '');
    worst.forEach((x, i) => lines.push(`${i + 1}. \`${x.group}/${x.workload.id}\`: ${v} costs ${times(x.ratio)} of ${x.best}`));
  }
  lines.push('');
  return lines.join('\n');
}

export function markdown(r: BenchResult): string {
  const m = r.machine;
  const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `# vefs bench: ${r.quick ? 'quick run (small sizes, one run: a first look, not figures to quote)' : 'full run'}`,
    '',
    `${r.started.slice(0, 10)}, ${Math.round(r.seconds)} s. Every figure is the median of ${r.runs} run(s), `
      + `± half the range of the runs relative to the median; ↑ higher is better, ↓ lower is better.`,
    '',
    `- Machine: ${m.os}; kernel ${m.kernel}; ${m.cpu}, ${m.cores} cores; ${gib(m.memoryBytes)} RAM`,
    `- Disk: ${m.disk}; filesystem ${m.filesystem}`,
    `- Load average (1, 5, 15 min): ${r.loadavg.start.map((l) => l.toFixed(2)).join(', ')} at the start, `
      + `${r.loadavg.end.map((l) => l.toFixed(2)).join(', ')} at the end (the run's own I/O counts too)`,
    `- Template: the busybox template plus the host's C toolchain packages (${r.template.toolchainFiles} files; `
      + `${r.template.realEntries} entries in this real tree), a ${figure(r.sizes.largeBytes / 2 ** 20)} MiB file, `
      + `a ${r.sizes.manyEntries.toLocaleString('en')}-entry directory. Stat and untar work on `
      + `${r.template.tree === '.' ? 'the whole real tree' : `its \`${r.template.tree}\``} (${r.template.treeEntries} entries).`,
    '',
    '| backend | how | version |', '|---|---|---|',
    ...r.backends.map((b) => `| ${b.id} | ${b.how} | ${b.skipped ? `**skipped:** ${b.skipped}` : b.version ?? ''} |`),
    '',
    summaryMarkdown(r),
    ...r.groups.map((g) => groupMarkdown(r, g)),
    '## Tools', '',
    ...Object.entries(m.tools).map(([k, v]) => `- ${k}: ${v.replace(/\n/g, '; ')}`),
    '',
  ];
  return lines.join('\n');
}

export function groupSvg(r: BenchResult, g: GroupResult): string {
  const bs = ran(r);
  const series: Series[] = bs.map((b, i) => ({ name: b.id, color: COLORS[b.id] ?? PALETTE[i % PALETTE.length] }));
  const categories = g.workloads.map((w) => {
    const c = compare(w, r.backends);
    // Without raw, the best peer is the reference.
    const ref = c.raw ?? c.best?.median ?? [...c.summaries.values()][0]?.median;
    return {
      label: `${w.id} (${w.unit} ${arrow(w.better)})`,
      bars: bs.map((b) => {
        const s = c.summaries.get(b.id);
        if (!s || ref === undefined) return null;
        const [a, z] = [cost(s.min, ref, w.better), cost(s.max, ref, w.better)];
        const value = cost(s.median, ref, w.better);
        return { value, low: Math.min(a, z), high: Math.max(a, z), text: `${times(value)} · ${figure(s.median)} ${w.unit}` };
      }),
    };
  });
  const reference = r.backends.some((b) => b.id === 'raw' && !b.skipped) ? 'raw' : 'the best peer';
  return barChart({
    title: `vefs bench: ${g.title}${r.quick ? ' (quick run)' : ''}`,
    subtitle: `cost relative to ${reference} (shorter is better), median of ${r.runs} run(s), error bars: min–max; after each bar: the median figure`,
    axisLabel: `× ${reference}`,
    series,
    categories,
    reference: 1,
  });
}

/** Writes results.json, results.md and one SVG per group that ran into dir; returns the paths. */
export function writeReport(dir: string, r: BenchResult): string[] {
  mkdirSync(dir, { recursive: true });
  const written = [join(dir, 'results.json'), join(dir, 'results.md')];
  writeFileSync(written[0], `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(written[1], markdown(r));
  for (const g of r.groups.filter((x) => !x.skipped && x.workloads.length > 0)) {
    const p = join(dir, `${g.id}.svg`);
    writeFileSync(p, groupSvg(r, g));
    written.push(p);
  }
  return written;
}
