// Page cache: how many copies of one template file the page cache holds
// after N VE roots have each read it once. Kernel overlayfs hands the reads
// to the template's own inode (one copy); a FUSE filesystem caches its own
// pages on top of what its server reads from the template (N + 1).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fillFile } from '../template.js';
import type { Context, Group } from '../types.js';

const SHARED = 'srv/data/shared.bin';

/** Cached (page cache) bytes, host-wide. */
function cachedBytes(): number {
  const m = /^Cached:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!m) throw new Error('/proc/meminfo has no Cached line');
  return Number(m[1]) * 1024;
}

/** fincore's resident bytes of each path (it mmaps the file and asks mincore). */
async function resident(ctx: Context, paths: string[]): Promise<number[]> {
  const { stdout } = await ctx.run('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', ...paths]);
  return stdout.trim().split('\n').map(Number);
}

export const pagecache: Group = {
  id: 'pagecache',
  title: 'Page cache',
  method: 'Caches dropped and the N VE roots mounted; then each root reads the same template file once (dd). '
    + 'The figure is the growth of Cached in /proc/meminfo over those reads, divided by the file\'s size: the copies the page cache holds, '
    + 'whatever inode they hang off (the template file\'s, an overlay\'s, each FUSE mount\'s). '
    + 'It counts everything else that the host cached meanwhile, so it is rounded to 0.1 and the file is large. '
    + 'The JSON also has fincore\'s resident bytes of the backing file and of the file in each root, read afterwards: '
    + 'fincore opens the file, and a FUSE server that does not keep the cache on open makes the kernel drop that mount\'s pages, '
    + 'so for such a server fincore undercounts and /proc/meminfo is the figure to trust.',
  tools: ['fincore'],
  async template({ dir, sizes }) {
    mkdirSync(join(dir, 'srv/data'), { recursive: true });
    fillFile(join(dir, SHARED), sizes.sharedBytes);
  },
  workloads(sizes) {
    return [{
      id: 'copies',
      title: `copies of one ${Math.round(sizes.sharedBytes / 2 ** 20)} MiB template file in the page cache after ${sizes.sharedMounts} VE roots read it`,
      unit: 'copies', better: 'lower', cold: true, mounts: sizes.sharedMounts,
      async measure(ctx) {
        const before = cachedBytes();
        for (const root of ctx.roots) await ctx.run('dd', [`if=${join(root, SHARED)}`, 'of=/dev/null', 'bs=1M', 'status=none']);
        const copies = (cachedBytes() - before) / sizes.sharedBytes;
        const [backing, ...roots] = await resident(ctx, [join(ctx.backing, SHARED), ...ctx.roots.map((r) => join(r, SHARED))]);
        ctx.note('meminfoCopies', copies);
        ctx.note('fincoreCopies', { backing: backing / sizes.sharedBytes, roots: roots.map((b) => b / sizes.sharedBytes) });
        return Math.round(copies * 10) / 10;
      },
    }];
  },
};
