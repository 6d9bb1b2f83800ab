// Unification: `vefs unify` side by side with what an operator would run
// instead, util-linux `hardlink -X` (the same predicate: mode, owner, mtime
// and xattrs respected), `jdupes -rL` and `rdfind -makehardlinks true` (both
// link on content alone), on one corpus (bench/unify-corpus.ts), in one
// sample each. Each tool gets its own fresh copy of the corpus (and vefs an
// empty index), so every figure starts from the same trees.
//
// The tools work on plain directories of the run's disk, not through a VE
// root: no workload mounts anything, and every backend of a run repeats the
// same measurement; run the group with `--backends raw`.
//
// The large corpus: VEFS_BENCH_UNIFY_DEBIAN=DIR uses the Debian tree in DIR
// (`debootstrap --variant=minbase bookworm DIR` first if DIR does not exist,
// 2 to 3 minutes) as the template of 7 drifted copies: 8 trees, a ninth
// added. The copies keep the packages' files as debootstrap wrote them
// (package mtimes, owners, modes), as separate debootstrap runs would; what
// separate runs would make differ (generated files under /etc and /var) the
// drift stands in for.
import { closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import xxhash from 'xxhash-addon';
import { native, toBytes, C, type NativeStat } from '../../native/index.js';
import { run } from '../exec.js';
import type { Context, Group, Sizes, Workload } from '../types.js';
import { buildTemplate, buildVe, FULL_HOST, QUICK_HOST } from '../unify-corpus.js';

const VEFS_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const DEBIAN = process.env.VEFS_BENCH_UNIFY_DEBIAN;

interface Corpus {
  dir: string;
  /** Unified together first. */
  trees: string[];
  /** The VE added to an already unified set. */
  extra: string;
}

/** The corpus lives beside the run's template, outside every VE root. */
const corpusDir = (template: string): string => join(dirname(template), 'unify-corpus');

function corpusOf(template: string, sizes: Sizes): Corpus {
  const ves = DEBIAN ? 7 : sizes.quick ? 1 : 8;
  return {
    dir: corpusDir(template),
    trees: ['template', ...Array.from({ length: ves }, (_, i) => `ve${i + 1}`)],
    extra: `ve${ves + 1}`,
  };
}

interface Tool {
  id: string;
  /** The command over these trees, with state (index, output files) in state. */
  command(trees: string[], state: string): { file: string; args: string[]; env?: NodeJS.ProcessEnv };
  /** Loads the tool's binary (and for vefs its modules) and does nothing: a cold run times the trees, not the tool. */
  load: [string, string[]];
}

const VEFS = 'vefs unify';
const TOOLS: Tool[] = [
  {
    id: VEFS,
    command: (trees, state) => ({ file: process.execPath, args: [VEFS_CLI, 'unify', '--quiet', '--no-default-excludes', ...trees],
      env: { ...process.env, VEFS_STATE_DIR: state } }),
    load: [process.execPath, [VEFS_CLI, 'unify', '--help']],
  },
  { id: 'hardlink -X', command: (trees) => ({ file: 'hardlink', args: ['-X', '-q', ...trees] }), load: ['hardlink', ['--version']] },
  { id: 'jdupes -rL', command: (trees) => ({ file: 'jdupes', args: ['-rLq', ...trees] }), load: ['jdupes', ['--version']] },
  {
    id: 'rdfind',
    command: (trees, state) => ({ file: 'rdfind', args: ['-makehardlinks', 'true', '-outputname', join(state, 'rdfind.txt'), ...trees] }),
    load: ['rdfind', ['-v']],
  },
];

interface Timed {
  seconds: number;
  cpuSeconds: number;
  rssMb: number;
}

async function timed(tool: Tool, trees: string[], cwd: string, state: string): Promise<Timed> {
  const c = tool.command(trees, state);
  const { stderr } = await run('/usr/bin/time', ['-f', '%e %U %S %M', c.file, ...c.args], { cwd, env: c.env });
  const [wall, user, sys, rssKb] = stderr.trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number, number, number];
  return { seconds: wall, cpuSeconds: user + sys, rssMb: rssKb / 1024 };
}

async function dropCaches(tool: Tool): Promise<void> {
  await run('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  await run(tool.load[0], tool.load[1]);
}

/** Removes a tool's copy: unified inodes are immutable. */
async function removeCopy(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  await run('chattr', ['-R', '-f', '-i', dir]).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}

/** A fresh copy of the corpus and an empty state directory for one tool; on disk and clean in the page cache. */
async function freshCopy(c: Corpus, work: string): Promise<{ copy: string; state: string }> {
  await removeCopy(work);
  mkdirSync(work, { recursive: true });
  const copy = join(work, 'trees');
  const state = join(work, 'state');
  await run('cp', ['-a', c.dir, copy]);
  mkdirSync(state);
  await run('sync', []);
  return { copy, state };
}

type Step = 'full' | 'rerun' | 'add';

/** Runs one tool up to the step that is timed; the steps before it are not. */
async function scenario(c: Corpus, work: string, tool: Tool, step: Step, cold: boolean): Promise<Timed> {
  const { copy, state } = await freshCopy(c, work);
  try {
    if (step !== 'full') await timed(tool, c.trees, copy, state);
    if (cold) await dropCaches(tool);
    else await run('sync', []);
    return await timed(tool, step === 'add' ? [...c.trees, c.extra] : c.trees, copy, state);
  } finally {
    await removeCopy(work);
  }
}

const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;

/** vefs against each tool and against the best of them, on one figure; the rest goes into the notes. */
function compared(ctx: Context, results: Map<string, Timed>, figure: (t: Timed) => number): number {
  const vefs = figure(results.get(VEFS)!);
  const peers = [...results].filter(([id]) => id !== VEFS);
  const best = Math.min(...peers.map(([, t]) => figure(t)));
  ctx.note('tools', Object.fromEntries(results));
  ctx.note('vefsOver', Object.fromEntries(peers.map(([id, t]) => [id, ratio(vefs, figure(t))])));
  ctx.note('loadavg', loadavg());
  return vefs / best;
}

/** The tool order rotates from sample to sample, so no tool always runs right after the same one. */
let rotation = 0;
const toolsInTurn = (): Tool[] => {
  const k = rotation++ % TOOLS.length;
  return [...TOOLS.slice(k), ...TOOLS.slice(0, k)];
};

function timeWorkload(sizes: Sizes, id: string, title: string, step: Step, cold: boolean): Workload {
  return {
    id, title, unit: '× best tool', better: 'lower', mounts: 0,
    async measure(ctx) {
      const c = corpusOf(ctx.template, sizes);
      const results = new Map<string, Timed>();
      for (const tool of toolsInTurn()) results.set(tool.id, await scenario(c, join(c.dir, '..', 'unify-work'), tool, step, cold));
      return compared(ctx, new Map(TOOLS.map((t) => [t.id, results.get(t.id)!])), (t) => t.seconds);
    },
  };
}

/** What a VE can see of a file: type and permissions, owner, size, mtime, xattrs (not inode, links or ctime). */
interface Visible {
  facts: string;
  ino: bigint;
  size: number;
}

const lstat = (path: string): NativeStat => native.fstatat(C.AT_FDCWD, toBytes(path), C.AT_SYMLINK_NOFOLLOW);

function visible(path: string): Visible {
  const st = lstat(path);
  const names = native.llistxattr(toBytes(path)).sort();
  const xattrs = names.map((n) => `${n}=${native.lgetxattr(toBytes(path), n)?.toString('hex') ?? ''}`).join(',');
  return { facts: `${st.mode}:${st.uid}:${st.gid}:${st.size}:${st.mtimeSec}.${st.mtimeNsec}:${xattrs}`, ino: st.ino, size: st.size };
}

const contentHash = (path: string): string => {
  const h = new xxhash.XXHash128(Buffer.alloc(4));
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest().toString('hex');
};

/** Every regular file below dir, ROOT-relative paths, without following symlinks. */
function* regularFiles(dir: string, rel = ''): Generator<string> {
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = join(rel, e.name);
    if (e.isDirectory()) yield* regularFiles(dir, r);
    else if (e.isFile()) yield r;
  }
}

interface Footprint {
  /** Relative path to what a VE sees of it, and its content hash. */
  files: Map<string, { facts: string; hash: string }>;
}

let manifest: { dir: string; footprint: Footprint } | null = null;

/** What every file of the corpus looks like before any tool ran; computed once per run. */
function corpusManifest(c: Corpus): Footprint {
  if (manifest?.dir === c.dir) return manifest.footprint;
  const files = new Map<string, { facts: string; hash: string }>();
  for (const tree of [...c.trees, c.extra]) {
    for (const rel of regularFiles(join(c.dir, tree))) {
      const p = join(c.dir, tree, rel);
      files.set(join(tree, rel), { facts: visible(p).facts, hash: contentHash(p) });
    }
  }
  manifest = { dir: c.dir, footprint: { files } };
  return manifest.footprint;
}

interface Reclaim {
  inodes: number;
  bytes: number;
  /** Names now sharing an inode whose visible metadata changed: linked beyond the metadata-respecting predicate. */
  metadataChanged: number;
  /** Names whose bytes changed: false links of any tool. */
  contentChanged: number;
}

/** Inodes and bytes reclaimed by a run over the corpus, and what a VE would see differently afterwards. */
function reclaimOf(c: Corpus, copy: string, before: Footprint): Reclaim {
  const inodes = new Map<bigint, { size: number; paths: string[] }>();
  let metadataChanged = 0;
  for (const tree of [...c.trees, c.extra]) {
    for (const rel of regularFiles(join(copy, tree))) {
      const key = join(tree, rel);
      const v = visible(join(copy, key));
      if (v.facts !== before.files.get(key)?.facts) metadataChanged++;
      const i = inodes.get(v.ino) ?? { size: v.size, paths: [] };
      i.paths.push(key);
      inodes.set(v.ino, i);
    }
  }
  let contentChanged = 0;
  let shared = 0;
  let bytes = 0;
  for (const i of inodes.values()) {
    if (i.paths.length < 2) continue;
    shared += i.paths.length - 1;
    bytes += i.size * (i.paths.length - 1);
    const hash = contentHash(join(copy, i.paths[0]!));
    contentChanged += i.paths.filter((p) => before.files.get(p)?.hash !== hash).length;
  }
  // The corpus's own hard links (none are made by buildVe, but a Debian tree has a few) are not reclaimed by the tools.
  const own = sharedIn(c);
  return { inodes: shared - own.inodes, bytes: bytes - own.bytes, metadataChanged, contentChanged };
}

let corpusShared: { dir: string; inodes: number; bytes: number } | null = null;

function sharedIn(c: Corpus): { inodes: number; bytes: number } {
  if (corpusShared?.dir === c.dir) return corpusShared;
  const seen = new Set<bigint>();
  let inodes = 0;
  let bytes = 0;
  for (const tree of [...c.trees, c.extra]) {
    for (const rel of regularFiles(join(c.dir, tree))) {
      const st = lstat(join(c.dir, tree, rel));
      if (seen.has(st.ino)) {
        inodes++;
        bytes += st.size;
      } else seen.add(st.ino);
    }
  }
  corpusShared = { dir: c.dir, inodes, bytes };
  return corpusShared;
}

export const unify: Group = {
  id: 'unify',
  title: 'Unification',
  method: '`vefs unify` against util-linux `hardlink -X` (same predicate: mode, owner, mtime, xattrs), `jdupes -rL` and '
    + '`rdfind -makehardlinks true` (content only), one after the other in each sample, each on its own fresh copy of the corpus '
    + '(bench/unify-corpus.ts: the busybox template with the host\'s Python and Perl libraries, time zones and shared libraries, '
    + 'and VE trees copied from it that drift: changed, re-moded, touched and xattr\'d files, files of their own, /etc and /var state; '
    + 'or with VEFS_BENCH_UNIFY_DEBIAN=DIR, 8 trees from a debootstrap --variant=minbase bookworm tree), every tool over the same trees, '
    + 'vefs with --no-default-excludes so that it sees what the others see. Timed with /usr/bin/time, each in its own process: '
    + 'a full first run (warm: the copy was just written and synced; cold: sync, drop_caches, the tool\'s binary loaded again), '
    + 'a rerun with nothing changed, and a run after one more VE was added to an already unified set (warm and cold). '
    + 'Each figure is vefs ÷ the best tool (lower is better; below 1 vefs is faster); the JSON notes have every tool\'s seconds, CPU '
    + 'seconds and peak RSS, and vefs ÷ each tool. Peak RSS is the largest of the full run, rerun and added VE. '
    + 'Reclaim is inodes reclaimed by vefs ÷ those of hardlink -X (higher is better; 1: the same), with bytes, names that jdupes and '
    + 'rdfind link beyond the metadata-respecting predicate (their visible mode, owner, mtime or xattrs changed) and names whose bytes '
    + 'changed in the notes; a vefs run that changed any name\'s bytes or metadata fails the run. '
    + 'The tools work on the run\'s disk, not through a VE root: every backend repeats the same measurement (use --backends raw).',
  tools: ['hardlink', 'jdupes', 'rdfind', 'chattr', '/usr/bin/time'],
  async template({ dir, sizes }) {
    const c = corpusOf(dir, sizes);
    const template = join(c.dir, 'template');
    mkdirSync(c.dir, { recursive: true });
    if (DEBIAN) {
      if (!existsSync(DEBIAN)) await run('debootstrap', ['--variant=minbase', 'bookworm', DEBIAN, 'http://deb.debian.org/debian'], { timeoutMs: 30 * 60_000 });
      await run('cp', ['-a', DEBIAN, template]);
    } else await buildTemplate(template, sizes.quick ? QUICK_HOST : FULL_HOST);
    for (const ve of [...c.trees.slice(1), c.extra]) buildVe(template, join(c.dir, ve), Number(ve.slice(2)), 1);
  },
  workloads(sizes) {
    return [
      timeWorkload(sizes, 'full-warm', 'full first run, warm cache', 'full', false),
      timeWorkload(sizes, 'full-cold', 'full first run, cold cache', 'full', true),
      timeWorkload(sizes, 'rerun', 'rerun with nothing changed, warm', 'rerun', false),
      timeWorkload(sizes, 'add-ve-warm', 'one VE added to a unified set, warm', 'add', false),
      timeWorkload(sizes, 'add-ve-cold', 'one VE added to a unified set, cold', 'add', true),
      {
        id: 'peak-rss', title: 'peak RSS over full run, rerun and added VE', unit: '× best tool', better: 'lower', mounts: 0,
        async measure(ctx) {
          const c = corpusOf(ctx.template, sizes);
          const work = join(c.dir, '..', 'unify-work');
          const results = new Map<string, Timed>();
          for (const tool of TOOLS) {
            const { copy, state } = await freshCopy(c, work);
            try {
              const runs = [await timed(tool, c.trees, copy, state), await timed(tool, c.trees, copy, state),
                await timed(tool, [...c.trees, c.extra], copy, state)];
              results.set(tool.id, runs.reduce((a, b) => (b.rssMb > a.rssMb ? b : a)));
            } finally {
              await removeCopy(work);
            }
          }
          return compared(ctx, results, (t) => t.rssMb);
        },
      },
      {
        id: 'reclaim', title: 'inodes reclaimed, vefs ÷ hardlink -X', unit: '× hardlink -X', better: 'higher', mounts: 0,
        async measure(ctx) {
          const c = corpusOf(ctx.template, sizes);
          const work = join(c.dir, '..', 'unify-work');
          const before = corpusManifest(c);
          const results = new Map<string, Reclaim>();
          for (const tool of TOOLS) {
            const { copy, state } = await freshCopy(c, work);
            try {
              await timed(tool, [...c.trees, c.extra], copy, state);
              results.set(tool.id, reclaimOf(c, copy, before));
            } finally {
              await removeCopy(work);
            }
          }
          const vefs = results.get(VEFS)!;
          if (vefs.metadataChanged > 0 || vefs.contentChanged > 0) {
            throw new Error(`vefs unify made false links: ${vefs.contentChanged} names changed bytes, ${vefs.metadataChanged} changed metadata`);
          }
          const hardlink = results.get('hardlink -X')!;
          ctx.note('tools', Object.fromEntries(results));
          ctx.note('bytesOverHardlink', ratio(vefs.bytes, hardlink.bytes));
          return vefs.inodes / hardlink.inodes;
        },
      },
    ];
  },
};
