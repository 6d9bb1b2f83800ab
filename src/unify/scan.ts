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
import { native, C, type NativeStat, type NativeError } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import type { Matcher } from './exclude.js';
import { BENEATH, type Root } from './roots.js';

export interface ScannedFile {
  name: string;
  st: NativeStat;
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

function lstatAt(fd: number, name: string): NativeStat | null {
  try {
    return native.fstatat(fd, name, C.AT_SYMLINK_NOFOLLOW);
  } catch (err) {
    if ((err as NativeError).code === 'ENOENT') return null;
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
      for (const e of native.getdents(fd)) {
        const path = child(rel, e.name);
        if (e.type === C.DT_DIR) {
          if (!opts.exclude(path)) subdirs.push(path);
          continue;
        }
        if (e.type !== C.DT_REG && e.type !== C.DT_UNKNOWN) continue;
        if (opts.isLeftover(e.name)) {
          leftovers.push({ root, rel, name: e.name });
          continue;
        }
        const st = lstatAt(fd, e.name);
        if (st === null) continue;
        const type = st.mode & C.S_IFMT;
        if (type === C.S_IFDIR) {
          if (!opts.exclude(path)) subdirs.push(path);
        } else if (type === C.S_IFREG && st.size >= opts.minSize && st.size > 0 && !opts.exclude(path)) {
          files.push({ name: e.name, st });
          counts.bytes += st.size;
        }
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
