// Step 1: walk the ROOTs and hand over, one directory at a time, the regular
// files that may be unified. The walk is synchronous per directory (on a warm
// cache that beats an async walk several times over) and yields to the event
// loop now and then so a progress bar can draw. Memory is one directory's
// entries plus the stack of directories still to visit.
//
// Every directory is opened beneath its ROOT with openat2 (no symlinks, no
// '..', no other mount), so a VE that swaps a directory for a symlink cannot
// send the walk outside its tree, and mounts below a ROOT (a VE's /proc) are
// skipped: unify never crosses filesystems.
import { native, C, type NativeError } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import type { Matcher } from './exclude.js';
import { BENEATH, type Root } from './roots.js';

/** What the walk learns of a file, and all the index keeps of it. */
export interface FileStat {
  dev: bigint;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

export interface ScannedFile {
  name: string;
  st: FileStat;
}

export interface DirVisit {
  root: Root;
  /** ROOT-relative, '/' for the ROOT itself. */
  rel: string;
  /** Open for the duration of the visit: xattrs are read through it. */
  fd: number;
  files: ScannedFile[];
}

/** A temporary name an interrupted run left behind. */
export interface Leftover {
  root: Root;
  rel: string;
  name: string;
}

export interface ScanOptions {
  exclude: Matcher;
  minSize: number;
  /** Names that earlier, interrupted runs may have left. */
  isLeftover(name: string): boolean;
}

export interface ScanCounts {
  dirs: number;
  files: number;
  bytes: number;
}

const YIELD_EVERY = 64;

function openDir(root: Root, rel: string): number | null {
  try {
    return native.openat2(root.fd, beneath(rel), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
  } catch (err) {
    // Gone meanwhile, replaced by a symlink, or a mount point (EXDEV): not ours to walk.
    if (['ENOENT', 'ENOTDIR', 'ELOOP', 'EXDEV', 'EAGAIN'].includes((err as NativeError).code)) return null;
    throw err;
  }
}

export async function scanRoot(root: Root, opts: ScanOptions, visit: (d: DirVisit) => void,
  counts: ScanCounts, leftovers: Leftover[]): Promise<void> {
  const stack = ['/'];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const fd = openDir(root, rel);
    if (fd === null) continue;
    try {
      const files: ScannedFile[] = [];
      const subdirs: string[] = [];
      const { names, types, stats, ids } = native.scanDir(fd);
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        const type = types[i]!;
        if (type === C.DT_DIR) {
          const path = child(rel, name);
          if (!opts.exclude(path)) subdirs.push(path);
          continue;
        }
        if (type !== C.DT_REG) continue;
        if (opts.isLeftover(name)) {
          leftovers.push({ root, rel, name });
          continue;
        }
        const size = stats[i * 9 + 4]!;
        if (size < opts.minSize || size === 0 || opts.exclude(child(rel, name))) continue;
        const s = i * 9;
        files.push({
          name,
          st: {
            dev: ids[i * 2]!, ino: ids[i * 2 + 1]!, mode: stats[s]!, nlink: stats[s + 1]!, uid: stats[s + 2]!, gid: stats[s + 3]!,
            size, mtimeSec: stats[s + 5]!, mtimeNsec: stats[s + 6]!, ctimeSec: stats[s + 7]!, ctimeNsec: stats[s + 8]!,
          },
        });
        counts.bytes += size;
      }
      counts.files += files.length;
      visit({ root, rel, fd, files });
      // Reversed so that the walk visits names in the order getdents gave them.
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    } finally {
      native.close(fd);
    }
    if (++counts.dirs % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
  }
}
