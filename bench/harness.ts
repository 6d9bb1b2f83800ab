// `vefs bench`: runs every workload of the chosen groups on every chosen
// backend, over one template, on one disk, in one run, and writes the
// report. Each sample gets fresh VE roots (an empty private tree, or for raw
// its copy of the template with the sample's output removed), so samples are
// independent; runs are interleaved backend by backend, each run starting
// with the next backend, so a drift of the machine touches every backend
// alike. Every mount is taken down on failure and on SIGINT/SIGTERM/SIGHUP,
// and the VEFS server of the run is stopped.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKENDS, type Backend, type Root } from './backends.js';
import { installed, killChildren, run } from './exec.js';
import { GROUPS } from './groups/index.js';
import { describeMachine } from './machine.js';
import { Progress } from './progress.js';
import { figure, writeReport, type BenchResult, type GroupResult, type Sample } from './report.js';
import { median } from './stats.js';
import { buildTemplate, rawTree } from './template.js';
import { OUT, type Context, type Group, type Sizes, type Workload } from './types.js';

export const FULL: Sizes = {
  quick: false,
  tree: '.',
  largeBytes: 2 ** 30,
  randWriteBytes: 256 * 2 ** 20,
  randSeconds: 5,
  fsyncBytes: 8 * 2 ** 20,
  manyEntries: 100_000,
  smallFiles: 10_000,
  sharedBytes: 256 * 2 ** 20,
  sharedMounts: 4,
  shareCounts: [1, 2, 4, 8],
  jobSources: 24,
};

export const QUICK: Sizes = {
  quick: true,
  tree: 'usr/include/linux',
  largeBytes: 32 * 2 ** 20,
  randWriteBytes: 16 * 2 ** 20,
  randSeconds: 0.5,
  fsyncBytes: 256 * 2 ** 10,
  manyEntries: 2_000,
  smallFiles: 500,
  sharedBytes: 32 * 2 ** 20,
  sharedMounts: 2,
  shareCounts: [2],
  jobSources: 2,
};

export interface BenchOptions {
  quick: boolean;
  /** Where the report goes; a dated directory under bench/results for a full run, a temporary one for --quick. */
  out?: string;
  groups?: string[];
  backends?: string[];
  runs?: number;
  /** Where the run's template, VE roots and server state live (default /var/tmp): a real disk, never tmpfs. */
  dir?: string;
}

export class BenchUsageError extends Error {}
export class Interrupted extends Error {}

/** What workloads run from the host (not from the VE root), each with arguments that load it and do nothing. */
const HOST_TOOLS = [['fio', '--version'], ['find', '--version'], ['du', '--version'], ['ls', '--version'], ['tar', '--version'],
  ['dd', '--version'], ['rm', '--version'], ['mkdir', '--version'], ['sync', '--version'], ['sh', '-c', ':'],
  ['chroot', '--version'], ['fincore', '--version'], [process.execPath, '-e', '0']];

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Mountpoints at or below dir, deepest first (mountinfo's fifth field; octal escapes undone). */
function mountsBelow(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

const TMPFS_MAGIC = 0x01021994;
const RESULTS = fileURLToPath(new URL('../../bench/results', import.meta.url));

function pick<T extends { id: string }>(all: T[], wanted: string[] | undefined, what: string): T[] {
  if (!wanted) return all;
  for (const w of wanted) {
    if (!all.some((x) => x.id === w)) throw new BenchUsageError(`unknown ${what} '${w}' (known: ${all.map((x) => x.id).join(', ')})`);
  }
  return all.filter((x) => wanted.includes(x.id));
}

function defaultOut(quick: boolean): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
  if (quick) return mkdtempSync(join(tmpdir(), 'vefs-bench-quick-'));
  return join(RESULTS, stamp.slice(0, 10));
}

export async function runBench(opts: BenchOptions): Promise<{ out: string; result: BenchResult }> {
  if (process.getuid?.() !== 0) throw new Error('vefs bench must run as root: it mounts, chroots and drops caches');
  const sizes = opts.quick ? QUICK : FULL;
  const runs = opts.runs ?? (opts.quick ? 1 : 3);
  if (!Number.isInteger(runs) || runs < 1) throw new BenchUsageError(`--runs must be a positive integer, not ${opts.runs}`);
  const groups = pick(GROUPS, opts.groups, 'group');
  // `vefs` names every binding's backend: the id VEFS had when it had one binding.
  const vefsIds = BACKENDS.filter((b) => b.kind === 'vefs').map((b) => b.id);
  const backends = pick(BACKENDS, opts.backends?.flatMap((b) => (b === 'vefs' ? vefsIds : [b])), 'backend');
  const parent = resolve(opts.dir ?? '/var/tmp');
  if (statfsSync(parent).type === TMPFS_MAGIC) {
    throw new BenchUsageError(`${parent} is a tmpfs: benchmark on a real disk (--dir on the disk the VE roots will use)`);
  }
  const out = resolve(opts.out ?? defaultOut(opts.quick));
  const progress = new Progress(0);
  const started = new Date();
  const loadAtStart = loadavg();

  const skippedBackends = new Map<string, string>();
  const usable: Backend[] = [];
  for (const b of backends) {
    const why = await b.unavailable();
    if (why) {
      skippedBackends.set(b.id, why);
      progress.log(`skipping backend ${b.id}: ${why}`);
    } else usable.push(b);
  }
  const skippedGroups = new Map<string, string>();
  const active: Group[] = [];
  for (const g of groups) {
    const lacking: string[] = [];
    for (const t of g.tools ?? []) if (!(await installed(t))) lacking.push(t);
    if (lacking.length > 0) {
      const why = `${lacking.join(', ')} not installed (.ci/install installs ${lacking.length > 1 ? 'them' : 'it'})`;
      skippedGroups.set(g.id, why);
      progress.log(`skipping group ${g.id}: ${why}`);
    } else active.push(g);
  }

  const hostTools: string[][] = [];
  for (const t of HOST_TOOLS) if (await installed(t[0])) hostTools.push(t);

  const versions: Record<string, string> = {};
  // A tool that cannot say its version may still mount; if it cannot, its mount says why.
  for (const b of usable) versions[b.id] = await b.version().catch((e: Error) => `unknown (${e.message.split('\n')[0]})`);

  const scratch = mkdtempSync(join(parent, 'vefs-bench-'));
  const previousState = process.env.VEFS_STATE_DIR;
  process.env.VEFS_STATE_DIR = join(scratch, 'state');
  const mounted = new Map<string, Backend>();
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = sig;
    progress.log(`${sig}: stopping; unmounting every VE root of the run`);
    killChildren();
  };
  // A closed terminal or a reader that went away (`vefs bench | head`) must not
  // kill the run before it has taken its mounts down.
  const ignore = (): void => undefined;
  process.stderr.on('error', ignore);
  process.stdout.on('error', ignore);
  for (const sig of SIGNALS) process.on(sig, onSignal);
  let completed = false;
  const check = (): void => {
    if (interrupted) throw new Interrupted(`interrupted by ${interrupted}`);
  };

  try {
    const machine = await describeMachine(scratch, versions);
    progress.log(`building the template in ${scratch}`);
    const template = join(scratch, 'template');
    const trash = join(scratch, 'trash');
    mkdirSync(trash);
    let trashed = 0;
    const rawCopy = join(scratch, 'raw');
    const built = await buildTemplate(template, join(scratch, 'tree.tar'), sizes, active);
    check();
    if (usable.some((b) => b.id === 'raw')) await rawTree(template, rawCopy, active.flatMap((g) => g.inPlace ?? []));
    check();

    const roots = (n: number): Root[] => Array.from({ length: n }, (_, k) => ({
      template, rawCopy,
      privateDir: join(scratch, `ve${k}/private`),
      workDir: join(scratch, `ve${k}/work`),
      mountpoint: join(scratch, `ve${k}/root`),
    }));
    const mountAll = async (b: Backend, rs: Root[]): Promise<void> => {
      for (const r of rs) {
        check();
        await b.mount(r);
        mounted.set(r.mountpoint, b);
      }
    };
    const unmountAll = async (): Promise<void> => {
      for (const [mp, b] of [...mounted].reverse()) {
        await b.unmount(mp);
        mounted.delete(mp);
      }
    };
    // Cold means the VE root's files are cold, not the host's tools: they are
    // loaded again right away, so that fio's libraries, say, are not timed.
    const dropCaches = async (): Promise<void> => {
      await run('sync', []);
      writeFileSync('/proc/sys/vm/drop_caches', '3\n');
      await Promise.all(hostTools.map(([file, ...args]) => run(file, args)));
    };

    const sample = async (w: Workload, b: Backend, index: number): Promise<Sample> => {
      const rs = roots(w.mounts ?? 1);
      for (const r of rs) {
        for (const d of [r.privateDir, r.workDir]) {
          rmSync(d, { recursive: true, force: true });
          mkdirSync(d, { recursive: true });
        }
        mkdirSync(r.mountpoint, { recursive: true });
      }
      const notes: Record<string, unknown> = {};
      const ctx: Context = {
        backend: b.id,
        roots: rs.map((r) => r.mountpoint),
        template,
        backing: b.id === 'raw' ? rawCopy : template,
        uppers: rs.map((r) => (b.id === 'raw' ? rawCopy : r.privateDir)),
        servers: async () => [...new Set((await Promise.all(rs.map((r) => b.servers?.(r.mountpoint) ?? []))).flat())],
        tarball: built.tarball,
        sizes,
        run: (file, args, o) => run(file, args, o),
        note: (k, v) => void (notes[k] = v),
      };
      await mountAll(b, rs);
      await w.prepare?.(ctx);
      check();
      if (w.cold) {
        await unmountAll();
        await dropCaches();
        await mountAll(b, rs);
      }
      check();
      const value = await w.measure(ctx);
      check();
      await unmountAll();
      const left = [...(b.id === 'raw' ? [join(rawCopy, OUT)] : []), ...rs.map((r) => join(r.privateDir, '..'))];
      for (const d of left) {
        if (!w.manyFiles) rmSync(d, { recursive: true, force: true });
        else if (existsSync(d)) renameSync(d, join(trash, String(trashed++)));
      }
      await run('sync', []);
      if (!Number.isFinite(value) || value <= 0) throw new Error(`its figure is ${value}, not a positive number`);
      return { run: index, value, ...(Object.keys(notes).length > 0 ? { notes } : {}) };
    };

    const groupResults: GroupResult[] = [];
    const plan = active.map((g) => ({ g, ws: g.workloads(sizes) }));
    progress.setTotal(plan.reduce((n, p) => n + p.ws.length, 0) * runs * usable.length);
    for (const { g, ws } of plan) {
      const gr: GroupResult = { id: g.id, title: g.title, method: g.method, workloads: [] };
      groupResults.push(gr);
      for (const w of ws) {
        const samples: Record<string, Sample[]> = Object.fromEntries(usable.map((b) => [b.id, []]));
        gr.workloads.push({ id: w.id, title: w.title, unit: w.unit, better: w.better, cold: Boolean(w.cold),
          mounts: w.mounts ?? 1, samples });
        for (let i = 1; i <= runs; i++) {
          // Each run starts with the next backend, so that no backend always follows the same one.
          const order = usable.map((_, k) => usable[(k + i - 1) % usable.length]);
          for (const b of order) {
            const what = `${g.id}/${w.id} on ${b.id}, run ${i}/${runs}`;
            progress.start(what);
            let s: Sample;
            try {
              s = await sample(w, b, i);
            } catch (err) {
              // A workload whose child the interrupt killed failed because of the interrupt.
              check();
              throw new Error(`backend ${b.id} failed in workload ${g.id}/${w.id} (run ${i}): ${(err as Error).message}`);
            }
            samples[b.id].push(s);
            progress.sample(what, `${figure(s.value)} ${w.unit}`);
          }
        }
        progress.log(`${g.id}/${w.id}: ${usable.map((b) => `${b.id} ${figure(median(samples[b.id].map((x) => x.value)))}`).join(', ')} ${w.unit}`);
      }
    }
    progress.end();
    const finished = new Date();
    const result: BenchResult = {
      tool: 'vefs bench',
      format: 1,
      quick: opts.quick,
      runs,
      started: started.toISOString(),
      finished: finished.toISOString(),
      seconds: (finished.getTime() - started.getTime()) / 1000,
      loadavg: { start: loadAtStart, end: loadavg() },
      sizes,
      machine,
      template: { realEntries: built.realEntries, toolchainFiles: built.toolchainFiles, tree: sizes.tree, treeEntries: built.treeEntries },
      backends: backends.map((b) => ({ id: b.id, kind: b.kind, how: b.how, version: versions[b.id],
        skipped: skippedBackends.get(b.id) })),
      groups: [
        ...groupResults,
        ...groups.filter((g) => skippedGroups.has(g.id))
          .map((g) => ({ id: g.id, title: g.title, method: g.method, skipped: skippedGroups.get(g.id), workloads: [] })),
      ],
    };
    writeReport(out, result);
    completed = true;
    return { out, result };
  } finally {
    progress.end();
    const problems: string[] = [];
    for (const [mp, b] of [...mounted].reverse()) {
      try {
        await b.unmount(mp);
      } catch (err) {
        problems.push(`${b.id} unmount of ${mp}: ${(err as Error).message}`);
        await run('umount', ['-l', mp]).catch((e: Error) => problems.push(`umount -l ${mp}: ${e.message}`));
      }
    }
    for (const b of usable) await b.finish?.().catch((e: Error) => problems.push(`${b.id}: ${e.message}`));
    for (const sig of SIGNALS) process.off(sig, onSignal);
    process.stderr.off('error', ignore);
    process.stdout.off('error', ignore);
    if (previousState === undefined) delete process.env.VEFS_STATE_DIR;
    else process.env.VEFS_STATE_DIR = previousState;
    // A mount the bookkeeping missed (an interrupt in the middle of mounting) must not survive the run
    // or keep its directory from being removed: detach whatever is still mounted below it, deepest first.
    for (const mp of mountsBelow(scratch)) {
      problems.push(`${mp} was still mounted at the end of the run`);
      await run('umount', ['-l', mp]).catch((e: Error) => problems.push(`umount -l ${mp}: ${e.message}`));
    }
    rmSync(scratch, { recursive: true, force: true });
    if (problems.length > 0) {
      // A run that failed already reports its own cause; one that did not must not pass with a mount left behind.
      if (completed) throw new Error(`cleanup after the run failed:\n${problems.join('\n')}`);
      progress.log(`cleanup problems:\n${problems.join('\n')}`);
    }
  }
}
