// `vefs bench`: the harness runs every group on every installed backend and
// writes a sane report; a backend whose mount fails, or a workload that
// fails, stops the run with a message naming both; an interrupt takes every
// mount down. No figure is asserted: these are timings of a shared machine.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withScratch, type Scratch } from './helpers/mounts.js';
import { QUICK } from '../bench/harness.js';
import { writeReport } from '../bench/report.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs vefs bench; onStderr may interrupt it once it has started measuring. */
function bench(s: Scratch, args: string[],
  opts: { path?: string; onStderr?: (text: string, pid: number) => void; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, VEFS_STATE_DIR: s.stateDir, ...(opts.path ? { PATH: `${opts.path}:${process.env.PATH}` } : {}) };
    const child = spawn(process.execPath, [CLI, 'bench', '--dir', s.base, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      opts.onStderr?.(stderr, child.pid!);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 240_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Every mount below base, of any type: raw's bind mounts too. */
const mountsUnder = (base: string): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
  .map((l) => l.split(' ')[4]).filter((m) => m !== undefined && (m === base || m.startsWith(`${base}/`)));

/** Processes whose VEFS_STATE_DIR lies below base: a VEFS server the run left behind. */
function serversUnder(base: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').some((e) => e.startsWith(`VEFS_STATE_DIR=${base}/`));
    } catch {
      return false;
    }
  }).map(Number);
}

function nothingLeft(t: ExecutionContext, s: Scratch): void {
  t.deepEqual(mountsUnder(s.base), [], 'a mount of the run is still there');
  t.deepEqual(serversUnder(s.base), [], 'the run\'s VEFS server still runs');
  t.deepEqual(readdirSync(s.base).filter((d) => d.startsWith('vefs-bench-')), [], 'the run\'s directory is still there');
}

/** A directory with one fake command in it, to put in front of PATH. */
function fakeCommand(s: Scratch, name: string, script: string): string {
  const bin = s.dir('fakebin');
  writeFileSync(join(bin, name), `#!/bin/sh\n${script}\n`);
  chmodSync(join(bin, name), 0o755);
  return bin;
}

interface Report {
  quick: boolean;
  machine: { kernel: string; cpu: string; disk: string; filesystem: string; tools: Record<string, string> };
  backends: { id: string; skipped?: string; version?: string }[];
  groups: { id: string; skipped?: string; workloads: { id: string; unit: string; samples: Record<string, { value: number }[]> }[] }[];
}

// The unify group works on plain directories and repeats itself on every backend: it has its own test below.
test.serial('vefs bench --quick runs every VE root group on every installed backend and writes the report', async (t) => {
  // Six backends and six groups, on a host that other test suites may keep busy.
  t.timeout(15 * 60_000);
  const s = withScratch(t, 'vefs-bench');
  const out = join(s.base, 'out');
  const r = await bench(s, ['--quick', '--groups', 'data,metadata,job,pagecache,sharing,runtime', '--out', out], { timeoutMs: 14 * 60_000 });
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Report;
  t.true(report.quick);
  for (const field of ['kernel', 'cpu', 'disk', 'filesystem'] as const) t.truthy(report.machine[field], field);
  t.truthy(report.machine.tools.fio);
  t.deepEqual(report.backends.map((b) => b.id), ['raw', 'overlayfs', 'fuse-overlayfs', 'unionfs-fuse', 'vefs-kernel', 'vefs-fuse-native']);
  const ran = report.backends.filter((b) => !b.skipped).map((b) => b.id);
  t.true(['raw', 'vefs-kernel', 'vefs-fuse-native'].every((b) => ran.includes(b)), JSON.stringify(report.backends));
  for (const b of report.backends) t.truthy(b.skipped ?? b.version, `backend ${b.id} has a version or a skip note`);
  t.deepEqual(report.groups.map((g) => g.id), ['data', 'metadata', 'job', 'pagecache', 'sharing', 'runtime']);
  const md = readFileSync(join(out, 'results.md'), 'utf8');
  for (const g of report.groups) {
    t.falsy(g.skipped, `group ${g.id} skipped: ${g.skipped}`);
    t.true(g.workloads.length > 0, g.id);
    const svg = readFileSync(join(out, `${g.id}.svg`), 'utf8');
    t.regex(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
    t.true(md.includes(`(\`${g.id}\`)`), `results.md has a section for ${g.id}`);
    for (const w of g.workloads) {
      t.deepEqual(Object.keys(w.samples).sort(), [...ran].sort(), `${g.id}/${w.id} has samples of every backend that ran`);
      for (const [b, samples] of Object.entries(w.samples)) {
        t.is(samples.length, 1, `${g.id}/${w.id} on ${b}: one run`);
        for (const x of samples) t.true(Number.isFinite(x.value) && x.value > 0, `${g.id}/${w.id} on ${b}: ${x.value}`);
      }
      t.true(md.includes(`| ${w.id} |`), `results.md has a row for ${g.id}/${w.id}`);
      t.true(svg.includes(`>${w.id} (`), `${g.id}.svg has a bar block for ${w.id}`);
    }
  }
  // Copies, not time: the kernel's own union and passthrough cache a shared file once, whatever the number of roots.
  for (const w of report.groups.find((g) => g.id === 'sharing')!.workloads) {
    for (const b of ['raw', 'overlayfs', 'vefs-kernel']) t.is(Math.round(w.samples[b][0].value), 1, `sharing/${w.id} on ${b}`);
  }
  t.regex(r.stdout, /report in .*results\.md/);
  nothingLeft(t, s);
});

interface UnifyNotes {
  tools: Record<string, { seconds?: number; rssMb?: number; inodes?: number; bytes?: number; metadataChanged?: number; contentChanged?: number }>;
  vefsOver?: Record<string, number>;
}

test.serial('vefs bench --quick --groups unify runs vefs unify, hardlink -X, jdupes and rdfind on one corpus and reports ratios', async (t) => {
  t.timeout(12 * 60_000);
  const s = withScratch(t, 'vefs-bench');
  const out = join(s.base, 'out');
  const r = await bench(s, ['--quick', '--groups', 'unify', '--backends', 'raw', '--out', out], { timeoutMs: 11 * 60_000 });
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Report;
  const [g] = report.groups;
  t.is(g!.id, 'unify');
  t.falsy(g!.skipped, g!.skipped);
  t.deepEqual(g!.workloads.map((w) => w.id), ['full-warm', 'full-cold', 'rerun', 'add-ve-warm', 'add-ve-cold', 'peak-rss', 'reclaim']);
  const tools = ['vefs unify', 'hardlink -X', 'jdupes -rL', 'rdfind'];
  for (const w of g!.workloads) {
    const [sample] = w.samples.raw as { value: number; notes: UnifyNotes }[];
    t.true(Number.isFinite(sample!.value) && sample!.value > 0, `${w.id}: ${sample!.value}`);
    t.deepEqual(Object.keys(sample!.notes.tools).sort(), [...tools].sort(), `${w.id} has every tool`);
    if (w.id === 'reclaim') {
      const n = sample!.notes.tools;
      t.is(n['vefs unify']!.contentChanged, 0);
      t.is(n['vefs unify']!.metadataChanged, 0, 'no false link by vefs');
      t.true(n['vefs unify']!.inodes! > 0);
      // The corpus drifts in mode, mtime and xattrs: the content-only tools link names the predicate keeps apart.
      t.true(n['jdupes -rL']!.metadataChanged! > 0 && n.rdfind!.metadataChanged! > 0, JSON.stringify(n));
    } else {
      for (const tool of tools) t.true(sample!.notes.tools[tool]!.seconds! >= 0, `${w.id}: ${tool} timed`);
      t.deepEqual(Object.keys(sample!.notes.vefsOver!).sort(), tools.slice(1).sort());
    }
  }
  t.regex(readFileSync(join(out, 'results.md'), 'utf8'), /\| full first run, warm cache \|/);
  nothingLeft(t, s);
});

test.serial('a backend whose mount fails stops the run with a message naming it and the workload', async (t) => {
  const s = withScratch(t, 'vefs-bench');
  const bin = fakeCommand(s, 'fuse-overlayfs', 'echo "fuse: device not found, try \'modprobe fuse\' first" >&2\nexit 1');
  const r = await bench(s, ['--quick', '--groups', 'pagecache', '--backends', 'raw,fuse-overlayfs,vefs-kernel', '--out', join(s.base, 'out')],
    { path: bin });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /backend fuse-overlayfs failed in workload pagecache\/copies \(run 1\): .*fuse-overlayfs .*exit 1\nfuse: device not found/);
  t.false(existsSync(join(s.base, 'out', 'results.json')), 'no report of a failed run');
  nothingLeft(t, s);
});

test.serial('a workload that fails stops the run with a message naming the backend and the workload', async (t) => {
  const s = withScratch(t, 'vefs-bench');
  const bin = fakeCommand(s, 'fio', 'case "$1" in --version) echo fio-fake; exit 0;; esac\necho "fio: engine psync failed" >&2\nexit 1');
  const r = await bench(s, ['--quick', '--groups', 'data', '--backends', 'vefs-fuse-native', '--out', join(s.base, 'out')], { path: bin });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /backend vefs-fuse-native failed in workload data\/seq-read-template-cold \(run 1\): fio .*exit 1\nfio: engine psync failed/);
  nothingLeft(t, s);
});

test.serial('an interrupt unmounts every VE root, stops the VEFS server and exits 130', async (t) => {
  const s = withScratch(t, 'vefs-bench');
  let sent = false;
  const r = await bench(s, ['--quick', '--groups', 'metadata', '--backends', 'vefs,overlayfs', '--out', join(s.base, 'out')], {
    onStderr: (text, pid) => {
      // Once the first sample is done, the server runs and mounts come and go.
      if (!sent && /\] metadata\/stat-tree-cold on vefs-kernel/.test(text)) {
        sent = true;
        process.kill(pid, 'SIGINT');
      }
    },
  });
  t.true(sent, r.stderr);
  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, /interrupted by SIGINT/);
  nothingLeft(t, s);
});

test('unknown groups and backends are usage errors', async (t) => {
  const s = withScratch(t, 'vefs-bench');
  const g = await bench(s, ['--quick', '--groups', 'data,nope']);
  t.is(g.code, 2);
  t.regex(g.stderr, /unknown group 'nope' \(known: data, metadata, job, pagecache, sharing, unify, runtime\)/);
  const b = await bench(s, ['--quick', '--backends', 'zfs']);
  t.is(b.code, 2);
  t.regex(b.stderr, /unknown backend 'zfs'/);
  const o = await bench(s, ['--frobnicate']);
  t.is(o.code, 2);
  t.regex(o.stderr, /Unknown option '--frobnicate'/);
});

test('the report names a skipped backend and a skipped group, and leaves them out of the tables', (t) => {
  const s = withScratch(t, 'vefs-bench');
  const samples = (v: number) => [{ run: 1, value: v }];
  const written = writeReport(join(s.base, 'out'), {
    tool: 'vefs bench', format: 1, quick: true, runs: 1, started: '2026-01-01T00:00:00Z', finished: '2026-01-01T00:01:00Z',
    seconds: 60, loadavg: { start: [0, 0, 0], end: [0, 0, 0] }, sizes: QUICK,
    machine: { os: 'os', kernel: 'k', cpu: 'c', cores: 2, memoryBytes: 2 ** 30, disk: 'd', filesystem: 'f', tools: {} },
    template: { realEntries: 1, toolchainFiles: 1, tree: '.', treeEntries: 1 },
    backends: [
      { id: 'raw', kind: 'limit', how: 'plain', version: '1' },
      { id: 'unionfs-fuse', kind: 'peer', how: 'unionfs', skipped: '`unionfs` is not installed' },
      { id: 'overlayfs', kind: 'peer', how: 'kernel', version: '1' },
      { id: 'vefs-kernel', kind: 'vefs', how: 'vefs', version: '1' },
      { id: 'vefs-fuse-native', kind: 'vefs', how: 'vefs', version: '1' },
    ],
    groups: [
      { id: 'metadata', title: 'Metadata', method: 'm', workloads: [
        { id: 'w', title: 'a workload', unit: 's', better: 'lower', cold: false, mounts: 1,
          samples: { raw: samples(1), overlayfs: samples(2), 'vefs-kernel': samples(3), 'vefs-fuse-native': samples(8) } },
      ] },
      { id: 'data', title: 'Data', method: 'd', skipped: 'fio not installed', workloads: [] },
    ],
  });
  t.deepEqual(written.map((p) => p.slice(join(s.base, 'out').length + 1)), ['results.json', 'results.md', 'metadata.svg']);
  const md = readFileSync(join(s.base, 'out', 'results.md'), 'utf8');
  t.regex(md, /\| unionfs-fuse \| unionfs \| \*\*skipped:\*\* `unionfs` is not installed \|/);
  t.regex(md, /\*\*Skipped:\*\* fio not installed/);
  t.regex(md, /\| workload \| unit \| raw \| overlayfs \| vefs-kernel \| vefs-fuse-native \|/);
  // Each binding side by side in the summary: its figure, ÷ best peer, ÷ raw; and its own largest gaps.
  t.regex(md, /\| metadata \| w \| s ↓ \| 1\.00 \| 2\.00 \(overlayfs\) \| 3\.00 \| ×1\.50 \| ×3\.00 \| 8\.00 \| ×4\.00 \| ×8\.00 \|/);
  t.regex(md, /Largest gaps of vefs-kernel to the best peer:\n\n1\. `metadata\/w`: vefs-kernel costs ×1\.50 of overlayfs/);
  t.regex(md, /Largest gaps of vefs-fuse-native to the best peer:\n\n1\. `metadata\/w`: vefs-fuse-native costs ×4\.00 of overlayfs/);
  t.false(readFileSync(join(s.base, 'out', 'metadata.svg'), 'utf8').includes('unionfs-fuse'));
});
