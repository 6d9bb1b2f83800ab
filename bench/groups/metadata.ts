// Metadata: stat of a real tree, readdir of a huge directory, small-file
// create and unlink, find and du of the whole template, untar of a real tree
// into the VE root and rm -rf of it.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OUT, type Context, type Group } from '../types.js';

const MANY = 'var/lib/many';
const SMALLFILES = fileURLToPath(new URL('../tools/smallfiles.js', import.meta.url));

/** Every entry of the real tree (or its part that sizes.tree names), not the groups' synthetic data: `find -printf` with stat fields lstat()s each one. */
const statTree = async (ctx: Context): Promise<number> => {
  const root = ctx.roots[0];
  const { stdout, seconds } = await ctx.run('find', [join(root, ctx.sizes.tree), '-path', join(root, MANY), '-prune', '-o',
    '-path', join(root, 'srv/data'), '-prune', '-o', '-printf', '%i %s %m\n']);
  ctx.note('entries', stdout.split('\n').length - 1);
  return seconds;
};

const smallFiles = async (ctx: Context, args: string[]): Promise<number> => {
  const { stdout } = await ctx.run(process.execPath, [SMALLFILES, ...args]);
  return (JSON.parse(stdout) as { seconds: number }).seconds;
};

const untarInto = (ctx: Context): string => join(ctx.roots[0], OUT, 'untar');

export const metadata: Group = {
  id: 'metadata',
  title: 'Metadata',
  method: 'Each figure is the wall time of a child process (find, ls, du, tar, rm, or a node script for small files that times its own loop). '
    + 'Cold: sync, drop_caches and every backend remounted (FUSE inode caches too) just before; warm: the same command once before. '
    + 'Small files are 4 KiB each, 1,000 per directory; create, untar and rm -rf end with sync, so their figures include getting to disk. '
    + 'The untar input is the real tree\'s tarball, on the same disk outside the VE root, read once before so it comes from the page cache. '
    + 'What the samples of create, unlink, untar and rm -rf leave is removed only at the end of the run: ext4 without a journal skips '
    + 'inodes freed in the last minute when it allocates one, so creating files right after a mass deletion costs every backend '
    + 'up to ten times more, and that would be measured instead of the backends.',
  async template({ dir, sizes }) {
    mkdirSync(join(dir, MANY), { recursive: true });
    for (let i = 0; i < sizes.manyEntries; i++) closeSync(openSync(join(dir, MANY, `entry-${i}`), 'w', 0o644));
  },
  workloads(sizes) {
    const many = sizes.manyEntries.toLocaleString('en');
    const tree = sizes.tree === '.' ? 'the real tree (busybox + C toolchain)' : `the real tree's ${sizes.tree}`;
    const small = sizes.smallFiles.toLocaleString('en');
    const readdir = async (ctx: Context): Promise<number> => (await ctx.run('ls', ['-f', join(ctx.roots[0], MANY)])).seconds;
    const createSmall = (ctx: Context): Promise<number> =>
      smallFiles(ctx, ['create', join(ctx.roots[0], OUT, 'small'), String(sizes.smallFiles), '4096']);
    const untar = async (ctx: Context): Promise<number> =>
      (await ctx.run('sh', ['-c', 'tar -xf "$1" -C "$2" && sync', 'sh', ctx.tarball, untarInto(ctx)])).seconds;
    const readTarball = async (ctx: Context): Promise<void> => {
      await ctx.run('dd', [`if=${ctx.tarball}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    };
    return [
      { id: 'stat-tree-cold', title: `stat of every entry of ${tree} (find -printf), cold`, unit: 's', better: 'lower',
        cold: true, measure: statTree },
      { id: 'stat-tree-warm', title: 'the same, warm', unit: 's', better: 'lower',
        prepare: async (ctx) => void (await statTree(ctx)), measure: statTree },
      { id: 'readdir-many-cold', title: `readdir (ls -f) of a ${many}-entry template directory, cold`, unit: 's', better: 'lower',
        cold: true, measure: readdir },
      { id: 'readdir-many-warm', title: 'the same, warm', unit: 's', better: 'lower',
        prepare: async (ctx) => void (await readdir(ctx)), measure: readdir },
      { id: 'create-small', title: `create ${small} files of 4 KiB, then sync`, unit: 's', better: 'lower', manyFiles: true,
        prepare: async (ctx) => void (await ctx.run('mkdir', ['-p', join(ctx.roots[0], OUT)])), measure: createSmall },
      { id: 'unlink-small', title: `unlink those ${small} files, then sync`, unit: 's', better: 'lower', manyFiles: true,
        prepare: async (ctx) => {
          await ctx.run('mkdir', ['-p', join(ctx.roots[0], OUT)]);
          await createSmall(ctx);
        },
        measure: (ctx) => smallFiles(ctx, ['unlink', join(ctx.roots[0], OUT, 'small')]) },
      { id: 'find-template-cold', title: 'find of the whole VE root (names only), cold', unit: 's', better: 'lower', cold: true,
        measure: async (ctx) => (await ctx.run('find', [ctx.roots[0]])).seconds },
      { id: 'du-template-cold', title: 'du -s of the whole VE root (a stat per entry), cold', unit: 's', better: 'lower', cold: true,
        measure: async (ctx) => (await ctx.run('du', ['-s', ctx.roots[0]])).seconds },
      { id: 'untar', title: `untar the tarball of ${tree} into a new directory of the VE root, then sync`, unit: 's', better: 'lower',
        manyFiles: true,
        prepare: async (ctx) => {
          await ctx.run('mkdir', ['-p', untarInto(ctx)]);
          await readTarball(ctx);
        },
        measure: untar },
      { id: 'rm-rf', title: 'rm -rf of that untarred tree, then sync', unit: 's', better: 'lower', manyFiles: true,
        prepare: async (ctx) => {
          await ctx.run('mkdir', ['-p', untarInto(ctx)]);
          await readTarball(ctx);
          await untar(ctx);
        },
        measure: async (ctx) => (await ctx.run('sh', ['-c', 'rm -rf "$1" && sync', 'sh', untarInto(ctx)])).seconds },
    ];
  },
};
