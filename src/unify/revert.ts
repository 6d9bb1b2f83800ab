// --revert: every path under the ROOTs that names a unified inode (immutable,
// more than one name) gets its own private, writable copy again, with the
// inode's owner, mode, xattrs and times, except that a path which had
// another mtime (linked under --ignore-mtime) gets its own mtime and atime
// back from the index. When all of an inode's names are under the ROOTs, one
// of them keeps the inode (a template's name first), which then has a single
// name and loses the flag; an inode that also has names elsewhere stays
// unified for those.
//
// Each copy is built beside its path under a temporary name (data with holes
// kept, then owner, mode, xattrs, times) and renamed over the path inside
// the mutable section: the path is never missing, and kill -9 leaves either
// the unified file or the complete copy (the next run removes the partial
// copy).
import { native, C, type NativeError, type NativeStat } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import { restoreDirTimes } from './dirtimes.js';
import { inodeFlags, isImmutable } from './flags.js';
import { openBeneath } from './hash.js';
import type { UnifyIndex } from './index.js';
import { BENEATH, type Root } from './roots.js';
import type { DirVisit } from './scan.js';
import { withMutableFds } from './section.js';
import { copyXattrs } from './xattrs.js';

export interface RevertCounts {
  inodes: number;
  paths: number;
  bytesCopied: number;
}

interface Name {
  root: number;
  rel: string;
  name: string;
  template: boolean;
}

const PAGE = 256;

/** During the walk: remembers every name of a file with more than one (few, next to all files). */
export function collectShared(index: UnifyIndex): (v: DirVisit) => void {
  index.db.exec(`DROP TABLE IF EXISTS temp.shared`);
  index.db.exec(`CREATE TEMP TABLE shared(dev INTEGER, ino INTEGER, root INTEGER, rel TEXT, name TEXT, template INTEGER)`);
  const add = index.db.prepare(`INSERT INTO shared VALUES (?, ?, ?, ?, ?, ?)`);
  return (v) => {
    const root = index.rootId(v.root);
    for (const f of v.files) {
      if (f.st.nlink > 1) add.run(BigInt.asIntN(64, f.st.dev), BigInt.asIntN(64, f.st.ino), root, v.rel, f.name, v.root.template ? 1 : 0);
    }
  };
}

async function copyBeside(src: number, dirfd: number, tmp: string, times: { mtimeSec: number; mtimeNsec: number; atimeSec: number; atimeNsec: number }): Promise<void> {
  const st = native.fstat(src);
  const dst = native.openat(dirfd, tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW, 0o600);
  try {
    await native.copyData(src, dst);
    // Owner before mode (chown drops set-id bits) and before xattrs (it drops security.capability).
    native.fchownat(dst, '', st.uid, st.gid, C.AT_EMPTY_PATH);
    native.fchmodat(dst, '', st.mode & 0o7777, C.AT_EMPTY_PATH);
    copyXattrs(src, dst);
    native.utimensat(dst, '', times.atimeSec, times.atimeNsec, times.mtimeSec, times.mtimeNsec, C.AT_EMPTY_PATH);
  } catch (err) {
    native.unlinkat(dirfd, tmp, 0);
    throw err;
  } finally {
    native.close(dst);
  }
}

async function revertInode(index: UnifyIndex, roots: Map<number, Root>, names: Name[], dryRun: boolean,
  tempName: () => string, counts: RevertCounts): Promise<void> {
  const first = names[0]!;
  let fd: number;
  try {
    fd = openBeneath(roots.get(first.root)!, first.rel, first.name);
  } catch (err) {
    if ((err as NativeError).code === 'ENOENT') return;
    throw err;
  }
  try {
    const st = native.fstat(fd);
    if (st.nlink < 2 || !isImmutable(inodeFlags(fd))) return;
    let copies = names;
    if (names.length === st.nlink) {
      const keeper = names.find((n) => n.template) ?? first;
      copies = names.filter((n) => n !== keeper);
    }
    counts.inodes++;
    if (dryRun) {
      counts.paths += copies.length;
      counts.bytesCopied += st.size * copies.length;
      return;
    }
    const ready: { dirfd: number; tmp: string; n: Name; dirTimes: NativeStat }[] = [];
    try {
      for (const n of copies) {
        const dirfd = native.openat2(roots.get(n.root)!.fd, beneath(n.rel), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
        const tmp = tempName();
        const dirTimes = native.fstat(dirfd);
        try {
          await copyBeside(fd, dirfd, tmp, index.replacedTimes(n.root, n.rel, n.name) ?? st);
        } catch (err) {
          native.close(dirfd);
          throw err;
        }
        ready.push({ dirfd, tmp, n, dirTimes });
      }
      const path = roots.get(first.root)!.path + child(first.rel, first.name);
      await withMutableFds([{ fd, path }], () => {
        while (ready.length > 0) {
          const r = ready.shift()!;
          try {
            const now = native.fstatat(r.dirfd, r.n.name, C.AT_SYMLINK_NOFOLLOW);
            // A name that no longer holds the inode is not ours to replace.
            if (now.ino !== st.ino || now.dev !== st.dev) {
              native.unlinkat(r.dirfd, r.tmp, 0);
              continue;
            }
            native.renameat2(r.dirfd, r.tmp, r.dirfd, r.n.name, 0);
            restoreDirTimes(r.dirfd, r.dirTimes);
          } finally {
            native.close(r.dirfd);
          }
          index.reverted(r.n.root, r.n.rel, r.n.name);
          counts.paths++;
          counts.bytesCopied += st.size;
        }
      });
    } finally {
      for (const r of ready) {
        native.unlinkat(r.dirfd, r.tmp, 0);
        native.close(r.dirfd);
      }
    }
  } finally {
    native.close(fd);
  }
}

/** After the walk: every inode seen with several names, one at a time. */
export async function revertShared(index: UnifyIndex, roots: Map<number, Root>, dryRun: boolean,
  tempName: () => string, counts: RevertCounts): Promise<void> {
  const inodes = index.db.prepare(`SELECT rowid, dev, ino FROM (SELECT MIN(rowid) AS rowid, dev, ino FROM shared GROUP BY dev, ino)
    WHERE rowid > ? ORDER BY rowid LIMIT ?`).safeIntegers(true);
  const namesOf = index.db.prepare(`SELECT root, rel, name, template FROM shared WHERE dev = ? AND ino = ? ORDER BY rowid`);
  for (let after = 0n; ;) {
    const page = inodes.all(after, PAGE) as { rowid: bigint; dev: bigint; ino: bigint }[];
    if (page.length === 0) break;
    after = page[page.length - 1]!.rowid;
    for (const i of page) {
      const names = (namesOf.all(i.dev, i.ino) as (Omit<Name, 'template'> & { template: number })[])
        .map((n) => ({ ...n, template: n.template === 1 }));
      await revertInode(index, roots, names, dryRun, tempName, counts);
    }
  }
}
