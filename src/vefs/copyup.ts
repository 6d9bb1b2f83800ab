// Copy-up: bring a template object into the private layer before its first
// change. One staged, awaited operation per node:
//
//  1. parents first, each with its own metadata (a parent must exist in the
//     private layer before its child can be published there);
//  2. build the copy under a temporary name in the work directory: data
//     (holes kept: native copyData clones or copies data segments only),
//     then owner, then mode (chown clears set-id bits), then xattrs (writing
//     data or changing the owner clears security.capability), then times
//     last (every step before changes them);
//  3. publish it with one rename that refuses to replace anything.
//
// The same staged path breaks the link of a unified file (unified.ts) before
// a VE changes it.
//
// A change of metadata only (chmod, chown, utimens, xattrs) of a regular file
// makes a metacopy file instead (format.ts): the same staged build without
// the data, which stays in the template until the first write. Filling in
// the data later copies it into the private file and only then drops the
// metacopy mark, so a crash in between still reads the template's data.
//
// A second caller for the same node awaits the first one's promise instead of
// starting another copy. A kill -9 at any moment leaves the template version
// visible, or the complete copy: never a torn file.
import { native, C, type NativeStat } from '../../native/index.js';
import { METACOPY_XATTR, REDIRECT_XATTR, isPrivateXattr } from './format.js';
import type { Layer } from './layers.js';
import type { Node } from './node.js';
import type { Union } from './union.js';
import { unifiedFd } from './unified.js';
import { withMutableFds } from '../unify/section.js';

const inFlight = new WeakMap<Node, Promise<void>>();

/** The kernel drops file capabilities on every write; filling in a metacopy file puts them back. */
const CAPABILITY_XATTR = 'security.capability';

/**
 * What the caller is about to change: `data` (a write), `meta` (attributes
 * only), `empty` (it truncates the file to zero: no data to copy), or `name`
 * (only its name: a rename, which a unified file survives unbroken).
 */
export type CopyUpFor = 'data' | 'meta' | 'empty' | 'name';

export async function copyUp(u: Union, node: Node, why: CopyUpFor = 'data'): Promise<void> {
  for (;;) {
    const running = inFlight.get(node);
    if (running) {
      await running;
      continue;
    }
    const step = nextStep(u, node, why);
    if (!step) return;
    const p = step().finally(() => inFlight.delete(node));
    inFlight.set(node, p);
    return p;
  }
}

/** What stands between node and a private object the caller may change, if anything. */
function nextStep(u: Union, node: Node, why: CopyUpFor): (() => Promise<void>) | null {
  if (!node.upper) return () => run(u, node, why);
  if (why === 'name') return null;
  if (node.metacopy && why !== 'meta') return () => fillData(u, node, why);
  if (node.type !== C.S_IFREG) return null;
  const shared = unifiedFd(u, node.path());
  return shared === null ? null : () => breakLink(u, node, shared);
}

async function run(u: Union, node: Node, why: CopyUpFor): Promise<void> {
  if (node.parent) await copyUp(u, node.parent, 'meta');
  const src = u.lowers[node.lowers[0]];
  const origin = u.topStat(node);
  const metacopy = (why === 'meta' || why === 'name') && (origin.mode & C.S_IFMT) === C.S_IFREG && origin.size > 0;
  const tmp = u.work.tempName();
  try {
    await build(src, node.lowerPath, origin, u.work.fd, tmp, metacopy ? 'size' : why === 'empty' ? 'none' : 'all');
    if (metacopy) native.lsetxattr(`/proc/self/fd/${u.work.fd}/${tmp}`, METACOPY_XATTR, Buffer.alloc(0), 0);
    copyMetadata(src, node.lowerPath, origin, u.work.fd, tmp);
    publish(u, node, tmp, C.RENAME_NOREPLACE);
  } catch (err) {
    u.work.remove(tmp);
    throw err;
  }
  node.upper = true;
  node.metacopy = metacopy;
  const copy = u.topStat(node);
  u.inodes.copiedUp(origin, copy);
  // Directories keep their template number; a file gets the copy's unless remapped.
  if (node.type !== C.S_IFDIR) node.ino = u.inodes.of(copy);
  if (node.type !== C.S_IFDIR && !metacopy) node.lowers = [];
}

/**
 * Publishes staged work/tmp as node's private object, and puts back the
 * parent's times: bringing an object up is no change the VE made to the
 * parent directory (overlayfs restores them too).
 */
function publish(u: Union, node: Node, tmp: string, flags: number): void {
  const parentRel = node.parent!.path();
  const parentSt = u.upper.stat(parentRel)!;
  u.upper.at(node.path(), (dirfd, name) => native.renameat2(u.work.fd, tmp, dirfd, name, flags));
  u.upper.at(parentRel, (dirfd, name) => native.utimensat(dirfd, name, parentSt.atimeSec, parentSt.atimeNsec,
    parentSt.mtimeSec, parentSt.mtimeNsec, C.AT_SYMLINK_NOFOLLOW));
}

/**
 * Copy-on-write of a unified file (unified.ts): the VE's own copy, built
 * like any copy-up from the shared inode, replaces its name inside the
 * mutable section. The other names keep the shared inode and its flag.
 */
async function breakLink(u: Union, node: Node, shared: number): Promise<void> {
  const rel = node.path();
  const tmp = u.work.tempName();
  try {
    const st = native.fstat(shared);
    const out = native.openat(u.work.fd, tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_CLOEXEC, 0o600);
    try {
      await native.copyData(shared, out);
      await native.fsync(out);
    } finally {
      native.close(out);
    }
    copyMetadata(u.upper, rel, st, u.work.fd, tmp);
    await withMutableFds([{ fd: shared, path: `${u.upper.path}/${rel}` }], () => publish(u, node, tmp, 0));
    node.ino = u.inodes.of(u.topStat(node));
  } catch (err) {
    u.work.remove(tmp);
    throw err;
  } finally {
    native.close(shared);
  }
}

/** Gives a metacopy file its data (or none, when the caller truncates it), then drops the mark. */
async function fillData(u: Union, node: Node, why: CopyUpFor): Promise<void> {
  const rel = node.path();
  const before = u.topStat(node);
  const cap = u.upper.getxattr(rel, CAPABILITY_XATTR);
  const out = u.upper.open(rel, C.O_WRONLY);
  try {
    if (why === 'empty') native.ftruncate(out, 0);
    else {
      const { layer, rel: dataRel } = u.dataLayer(node);
      const inp = layer.open(dataRel, C.O_RDONLY);
      try {
        await native.copyData(inp, out);
      } finally {
        native.close(inp);
      }
    }
    await native.fsync(out);
    // Writing data strips file capabilities and may clear set-id bits, and
    // sets the times: none of that is a change the VE made.
    if (cap) native.fsetxattr(out, CAPABILITY_XATTR, cap, 0);
    native.fchmodat(out, '', before.mode & 0o7777, C.AT_EMPTY_PATH);
    native.utimensat(out, '', before.atimeSec, before.atimeNsec, before.mtimeSec, before.mtimeNsec, C.AT_EMPTY_PATH);
  } finally {
    native.close(out);
  }
  u.upper.atPath(rel, (p) => {
    native.lremovexattr(p, METACOPY_XATTR);
    if (native.lgetxattr(p, REDIRECT_XATTR)) native.lremovexattr(p, REDIRECT_XATTR);
  });
  node.metacopy = false;
  node.lowers = [];
}

/** data: copy it all, none, or only the size (a metacopy file: all holes). */
async function build(src: Layer, rel: string, st: NativeStat, workfd: number, tmp: string,
  data: 'all' | 'none' | 'size'): Promise<void> {
  switch (st.mode & C.S_IFMT) {
    case C.S_IFREG: {
      const out = native.openat(workfd, tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_CLOEXEC, 0o600);
      try {
        if (data === 'size') native.ftruncate(out, st.size);
        if (data === 'all') {
          const inp = src.open(rel, C.O_RDONLY);
          try {
            await native.copyData(inp, out);
          } finally {
            native.close(inp);
          }
        }
        // Published copies must survive a power cut, as overlayfs's do.
        await native.fsync(out);
      } finally {
        native.close(out);
      }
      return;
    }
    case C.S_IFDIR:
      native.mkdirat(workfd, tmp, 0o700);
      return;
    case C.S_IFLNK:
      native.symlinkat(src.readlink(rel), workfd, tmp);
      return;
    default:
      native.mknodat(workfd, tmp, st.mode, st.rdev);
  }
}

/** Owner, mode, xattrs and times of `st` (at src/rel) onto the staged object. */
export function copyMetadata(src: Layer, rel: string, st: NativeStat, workfd: number, tmp: string): void {
  const isLink = (st.mode & C.S_IFMT) === C.S_IFLNK;
  native.fchownat(workfd, tmp, st.uid, st.gid, C.AT_SYMLINK_NOFOLLOW);
  if (!isLink) native.fchmodat(workfd, tmp, st.mode & 0o7777, 0);
  const staged = `/proc/self/fd/${workfd}/${tmp}`;
  for (const name of src.listxattr(rel)) {
    if (isPrivateXattr(name)) continue;
    const value = src.getxattr(rel, name);
    if (value) native.lsetxattr(staged, name, value, 0);
  }
  native.utimensat(workfd, tmp, st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec, C.AT_SYMLINK_NOFOLLOW);
}
