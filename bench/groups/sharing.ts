// Sharing: "one copy in memory". N VE roots read (dd) and then map (every
// page touched, all maps held at once) the same template file; how many
// copies of it does the page cache hold? Kernel overlayfs and FUSE
// passthrough hand the I/O to the template's own inode (one copy, whatever
// N); a FUSE server that serves reads itself caches the backing file it reads
// plus one copy per mount. A unified file (one inode hard-linked into two
// private trees) must be cached once too.
import { linkSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemCgroup } from '../memcg.js';
import { fillFile } from '../template.js';
import { OUT, type Context, type Group, type Workload } from '../types.js';

const SHARED = 'srv/data/shared.bin';
const UNIFIED = `${OUT}/unified.bin`;

// Maps every file given, touches one byte per page, and while all maps are
// held prints the named stat files (the cgroups' memory.stat, /proc/meminfo).
const MAPPER = `
import json, mmap, sys
n = int(sys.argv[1])
stats, paths = sys.argv[2:2 + n], sys.argv[2 + n:]
held = []
for p in paths:
    with open(p, 'rb') as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))
    held.append(m)
print(json.dumps([open(s).read() for s in stats]))
`;

const cachedIn = (meminfo: string): number => {
  const m = /^Cached:\s+(\d+) kB$/m.exec(meminfo);
  if (!m) throw new Error('/proc/meminfo has no Cached line');
  return Number(m[1]) * 1024;
};

/** Runs a command as a member of the cgroup from its first instruction on. */
const inCgroup = (ctx: Context, cg: MemCgroup, file: string, args: string[]) =>
  ctx.run('sh', ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', cg.procs, file, ...args]);

/**
 * Copies of the file at rel (relative to each root; backing is where it lies on disk) in the page cache while
 * every root has read and mapped it. The figure: file pages charged to the
 * readers' cgroup plus those charged to the servers' cgroup, over the size.
 */
async function copies(ctx: Context, rel: string, backing: string, bytes: number): Promise<number> {
  const paths = ctx.roots.map((r) => join(r, rel));
  // Loaded before the count starts: their pages are charged to this process's cgroup, not the readers'.
  await ctx.run('python3', ['-c', 'import json, mmap']);
  const tag = `vefs-bench-${process.pid}-${Date.now()}`;
  const readers = MemCgroup.create(`${tag}-readers`);
  let servers: MemCgroup | undefined;
  try {
    servers = MemCgroup.create(`${tag}-servers`);
    servers.adopt(await ctx.servers());
    const before = cachedIn(readFileSync('/proc/meminfo', 'utf8'));
    for (const p of paths) await inCgroup(ctx, readers, 'dd', [`if=${p}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    const stats = [readers.stat, servers.stat, '/proc/meminfo'];
    const { stdout } = await inCgroup(ctx, readers, 'python3', ['-c', MAPPER, String(stats.length), ...stats, ...paths]);
    const [readerStat, serverStat, meminfo] = JSON.parse(stdout) as string[];
    const charged = { readers: readers.fileBytes(readerStat) / bytes, servers: servers.fileBytes(serverStat) / bytes };
    ctx.note('cgroupCopies', charged);
    ctx.note('meminfoCopies', (cachedIn(meminfo) - before) / bytes);
    const { stdout: res } = await ctx.run('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES',
      backing, ...paths]);
    const [onDisk, ...roots] = res.trim().split('\n').map((b) => Number(b) / bytes);
    ctx.note('fincoreCopiesAfter', { backing: onDisk, roots });
    return Math.round((charged.readers + charged.servers) * 100) / 100;
  } finally {
    servers?.release();
    readers.release();
  }
}

/** One inode in every root's private tree (raw: in its own tree, which every root shows). */
async function unify(ctx: Context, bytes: number): Promise<void> {
  const [first, ...rest] = ctx.uppers.map((u) => join(u, UNIFIED));
  mkdirSync(join(ctx.uppers[0], OUT), { recursive: true });
  fillFile(first, bytes);
  for (const [k, other] of rest.entries()) {
    if (other === first) continue;
    mkdirSync(join(ctx.uppers[k + 1], OUT), { recursive: true });
    linkSync(first, other);
  }
}

export const sharing: Group = {
  id: 'sharing',
  title: 'One copy in memory',
  method: 'Caches dropped and N VE roots of one backend mounted; each root reads the same template file once (dd), then one process '
    + 'maps the file of every root and touches every page, and while all maps are held reads the counters. The figure is the file '
    + 'cache charged to two fresh memory cgroups, divided by the file\'s size: one holding the readers from their first instruction, '
    + 'one the backend\'s server processes for the duration (a FUSE server\'s own reads of the backing file are charged to it, '
    + 'not to the reader). Other work on the host is not counted, as it would be in /proc/meminfo. The JSON has, per sample, '
    + 'the readers\' and servers\' shares, the growth of Cached in /proc/meminfo over the same span (host-wide), and fincore\'s '
    + 'resident bytes of the backing file and of each root\'s file afterwards. The unified case: one file hard-linked into two '
    + 'private trees (raw: one file in its tree), read and mapped through two roots.',
  tools: ['python3', 'fincore', 'dd'],
  async template({ dir, sizes }) {
    mkdirSync(join(dir, 'srv/data'), { recursive: true });
    fillFile(join(dir, SHARED), sizes.sharedBytes);
  },
  workloads(sizes) {
    const mib = Math.round(sizes.sharedBytes / 2 ** 20);
    const shared = sizes.shareCounts.map((n): Workload => ({
      id: `read-map-${n}`,
      title: `copies of one ${mib} MiB template file in the page cache while ${n} VE root${n > 1 ? 's' : ''} read and map it`,
      unit: 'copies', better: 'lower', cold: true, mounts: n,
      measure: (ctx) => copies(ctx, SHARED, join(ctx.backing, SHARED), sizes.sharedBytes),
    }));
    return [...shared, {
      id: 'unified-2',
      title: `copies of one ${mib} MiB unified file (one inode in two private trees) while 2 VE roots read and map it`,
      unit: 'copies', better: 'lower', cold: true, mounts: 2,
      prepare: (ctx) => unify(ctx, sizes.sharedBytes),
      measure: (ctx) => copies(ctx, UNIFIED, join(ctx.uppers[0], UNIFIED), sizes.sharedBytes),
    }];
  },
};
