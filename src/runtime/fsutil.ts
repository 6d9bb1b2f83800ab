// Removing a tree that unify may have made partly immutable (chattr +i
// refuses unlink even to root), and measuring one. Both run as child
// processes: these trees are never on a VEFS mount, but they can be large.
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    // An immutable file fails its unlink with EPERM, and rm then reports whatever its retry hit (ENOTDIR).
    // chattr complains about symlinks and devices it cannot flag: harmless here.
    await run('chattr', ['-R', '-i', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Bytes of disk the tree uses (du's allocated size, each hard-linked inode once). */
export async function diskUsed(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '-B1', '-x', dir]);
  return Number(stdout.split('\t')[0]);
}
