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
//
// A rerun skips most statx calls: a directory whose inode, mtime and ctime
// are those of the last walk has the same names, each showing the same
// inode (a create, unlink, rename or link in it moves its mtime), and a name
// whose inode carried the immutable flag then cannot have changed content,
// mode, owner or xattrs since, unless someone cleared the flag by hand
// (`vefs unify --rescan` stats every file again). So only its other names
// are stat'ed; the sealed ones are handed over as trusted.
//
// A directory of the last walk whose regular files were all indexed (none
// too small to be: it could grow in place unseen) is not even opened while
// its stamp holds and its unsealed files (usually none, or a VE's own one
// among many unified ones) show what the index recorded: the stamps come
// from statx by path, a whole level of the tree per call, and its
// subdirectories from the index (KnownDir). Such a path may pass a symlink
// a VE swapped in after the parent was checked; the statx then shows
// another inode and the directory is walked as a changed one, beneath its
// ROOT. The walk only reads metadata this way: every open is beneath the
// ROOT.
import { native, C, SCAN_FIELDS, type NativeError, type NativeStat, type ScannedDir } from '../../native/index.js';
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
  /** Carries the immutable flag. */
  immutable: boolean;
  /** Has extended attributes (most files have none, and then they need not be read). */
  xattrs: boolean;
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
  /** The directory's own inode, mtime and ctime, taken before its entries were read. */
  stamp: string;
  files: ScannedFile[];
  /** Names not stat'ed: sealed at the last walk, in a directory unchanged since (Recalled). */
  trusted: string[];
  /** Regular files not handed over though not excluded: too small (for now), or leftovers. */
  loose: number;
}

/** A directory as the last walk (with the same exclusions and minimum size) left it. */
export interface KnownDir {
  id: number;
  stamp: string | null;
  /** Its regular files were all indexed (KnownDir walk, above). */
  indexed: boolean;
  /** Its files that were not sealed, by name, with the index's stamp of each (ScanOptions.fileStamp). */
  unsealed: Map<string, string>;
  files: number;
  bytes: number;
}

/** What the index remembers of a directory from the last walk. */
export interface Recalled {
  stamp: string | null;
  /** Names whose inode carried the immutable flag then, with their size. */
  sealed: Map<string, number>;
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
  /** The last walk's view of a directory, if it is to be trusted where it still holds. */
  recall?(root: Root, rel: string): Recalled | null;
  /** The directories the last walk left below this ROOT, by path, if it is to be trusted. */
  known?(root: Root): Map<string, KnownDir>;
  /** A known directory was found unchanged, and not opened. */
  passed?(dir: KnownDir): void;
  /** What the index records of a file, to compare with KnownDir.unsealed. */
  fileStamp?(st: FileStat): string;
}

export interface ScanCounts {
  dirs: number;
  passed: number;
  files: number;
  trusted: number;
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

/** A directory's stamp: what tells a rerun it is unchanged. */
export const stamp = (ino: bigint, mtimeSec: number, mtimeNsec: number, ctimeSec: number, ctimeNsec: number): string =>
  `${ino}:${mtimeSec}.${mtimeNsec}:${ctimeSec}.${ctimeNsec}`;

export const dirStamp = (st: NativeStat): string => stamp(st.ino, st.mtimeSec, st.mtimeNsec, st.ctimeSec, st.ctimeNsec);

/** Entry i of a packed listing, a regular file that was stat'ed. */
function fileOf(r: ScannedDir, i: number): FileStat {
  const { stats, ids } = r;
  const s = i * SCAN_FIELDS;
  return {
    dev: ids[i * 2]!, ino: ids[i * 2 + 1]!, mode: stats[s]!, nlink: stats[s + 1]!, uid: stats[s + 2]!, gid: stats[s + 3]!,
    size: stats[s + 4]!, mtimeSec: stats[s + 5]!, mtimeNsec: stats[s + 6]!, ctimeSec: stats[s + 7]!, ctimeNsec: stats[s + 8]!,
    immutable: stats[s + 9] === 1, xattrs: stats[s + 10] === 1,
  };
}

/** dirStamp of entry i of a packed listing. */
function packedStamp(r: ScannedDir, i: number): string | undefined {
  if (r.types[i] !== C.DT_DIR) return undefined;
  const s = i * SCAN_FIELDS;
  return stamp(r.ids[i * 2 + 1]!, r.stats[s + 5]!, r.stats[s + 6]!, r.stats[s + 7]!, r.stats[s + 8]!);
}

interface Collected {
  files: ScannedFile[];
  subdirs: string[];
  trusted: string[];
  loose: number;
}

/** The regular files of a packed listing that unify may look at; subdirectories and leftovers go to their lists. */
function collect(root: Root, rel: string, r: ScannedDir, opts: ScanOptions, out: Collected, leftovers: Leftover[], counts: ScanCounts): void {
  const { names, types } = r;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const type = types[i]!;
    if (type === C.DT_DIR) {
      const path = child(rel, name);
      if (!opts.exclude(path)) out.subdirs.push(path);
      continue;
    }
    if (type !== C.DT_REG) continue;
    if (opts.isLeftover(name)) {
      leftovers.push({ root, rel, name });
      out.loose++;
      continue;
    }
    if (opts.exclude(child(rel, name))) continue;
    const st = fileOf(r, i);
    // Not indexed, yet it may grow in place: its directory is never passed unopened (KnownDir).
    if (st.size < opts.minSize || st.size === 0) {
      out.loose++;
      continue;
    }
    out.files.push({ name, st });
    counts.bytes += st.size;
  }
}

/**
 * A directory unchanged since the last walk: its subdirectories and leftovers
 * from the listing, sealed names trusted, every other regular file stat'ed.
 */
function collectKnown(root: Root, rel: string, fd: number, sealed: Map<string, number>, opts: ScanOptions,
  out: Collected, leftovers: Leftover[], counts: ScanCounts): void {
  const listing = native.scanDir(fd, false);
  const others: string[] = [];
  for (let i = 0; i < listing.names.length; i++) {
    const name = listing.names[i]!;
    const type = listing.types[i]!;
    const size = sealed.get(name);
    if (type !== C.DT_REG || size === undefined || opts.isLeftover(name)) {
      if (type === C.DT_REG) others.push(name);
      else if (type === C.DT_DIR) {
        const path = child(rel, name);
        if (!opts.exclude(path)) out.subdirs.push(path);
      }
      continue;
    }
    if (size < opts.minSize || opts.exclude(child(rel, name))) continue;
    out.trusted.push(name);
    counts.bytes += size;
  }
  if (others.length > 0) collect(root, rel, native.statNames(fd, others), opts, out, leftovers, counts);
}

/** Each known directory's known subdirectories, by path. */
function childrenOf(known: Map<string, KnownDir>): Map<string, string[]> {
  const children = new Map<string, string[]>();
  for (const rel of known.keys()) {
    if (rel === '/') continue;
    const parent = rel.slice(0, rel.lastIndexOf('/')) || '/';
    const list = children.get(parent);
    if (list === undefined) children.set(parent, [rel]);
    else list.push(rel);
  }
  return children;
}

/** Stats taken per call while checking stamps: one call per level of the tree, not per directory. */
const STAT_BATCH = 4096;

export async function scanRoot(root: Root, opts: ScanOptions, visit: (d: DirVisit) => void,
  counts: ScanCounts, leftovers: Leftover[]): Promise<void> {
  const known = opts.known?.(root) ?? new Map<string, KnownDir>();
  const children = childrenOf(known);
  /** Paths through the ROOT's descriptor: the stamps of these directories, or undefined for one that is no directory now. */
  const stamps = (paths: string[]): (string | undefined)[] => {
    const out: (string | undefined)[] = [];
    for (let i = 0; i < paths.length; i += STAT_BATCH) {
      const r = native.statNames(root.fd, paths.slice(i, i + STAT_BATCH).map(beneath));
      for (let j = 0; j < r.names.length; j++) out.push(packedStamp(r, j));
    }
    return out;
  };
  /** The directory is as the last walk left it: stamp, and each unsealed file, stat'ed by path. */
  const unchanged = (k: KnownDir, rel: string): boolean => {
    if (k.unsealed.size === 0) return true;
    const names = [...k.unsealed.keys()];
    const r = native.statNames(root.fd, names.map((n) => beneath(child(rel, n))));
    return names.every((n, i) => {
      if (r.types[i] !== C.DT_REG) return false;
      const st = fileOf(r, i);
      return !st.immutable && opts.fileStamp!(st) === k.unsealed.get(n);
    });
  };
  // Level by level, so that the stamps of a whole level are taken in a few calls.
  for (let level = ['/']; level.length > 0;) {
    const candidates = level.filter((rel) => known.get(rel)?.indexed === true);
    const seen = new Map(stamps(candidates).map((stamp, i) => [candidates[i]!, stamp]));
    const next: string[] = [];
    for (const rel of level) {
      const k = known.get(rel);
      if (k !== undefined && seen.get(rel) === k.stamp && unchanged(k, rel)) {
        counts.passed++;
        counts.files += k.files;
        counts.trusted += k.files - k.unsealed.size;
        counts.bytes += k.bytes;
        opts.passed?.(k);
        for (const c of children.get(rel) ?? []) next.push(c);
      } else {
        const fd = openDir(root, rel);
        if (fd === null) continue;
        try {
          const stamp = dirStamp(native.fstat(fd));
          const recalled = opts.recall?.(root, rel) ?? null;
          const out: Collected = { files: [], subdirs: [], trusted: [], loose: 0 };
          if (recalled !== null && recalled.stamp === stamp) collectKnown(root, rel, fd, recalled.sealed, opts, out, leftovers, counts);
          else collect(root, rel, native.scanDir(fd), opts, out, leftovers, counts);
          counts.files += out.files.length + out.trusted.length;
          counts.trusted += out.trusted.length;
          visit({ root, rel, fd, stamp, files: out.files, trusted: out.trusted, loose: out.loose });
          // Not push(...): a directory may hold more subdirectories than a call takes arguments.
          for (const c of out.subdirs) next.push(c);
        } finally {
          native.close(fd);
        }
      }
      if (++counts.dirs % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
    }
    level = next;
  }
}
