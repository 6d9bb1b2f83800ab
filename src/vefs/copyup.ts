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
//  3. publish it with one rename that refuses to replace anything, and put
//     back the parent's times: a copy-up is no change the VE made to the
//     parent directory (overlayfs restores them too).
//
// A second caller for the same node awaits the first one's promise instead of
// starting another copy. A kill -9 at any moment leaves the template version
// visible, or the complete copy: never a torn file.
import { native, C, type NativeStat } from '../../native/index.js';
import { isPrivateXattr } from './format.js';
import type { Layer } from './layers.js';
import type { Node } from './node.js';
import type { Union } from './union.js';

const inFlight = new WeakMap<Node, Promise<void>>();

export interface CopyUpOptions {
  /** False when the caller truncates the file to zero anyway (open with O_TRUNC, truncate(0)). */
  data?: boolean;
}

export function copyUp(u: Union, node: Node, opts: CopyUpOptions = {}): Promise<void> {
  if (node.upper) return Promise.resolve();
  let p = inFlight.get(node);
  if (!p) {
    p = run(u, node, opts.data ?? true).finally(() => inFlight.delete(node));
    inFlight.set(node, p);
  }
  return p;
}

async function run(u: Union, node: Node, withData: boolean): Promise<void> {
  if (node.parent) await copyUp(u, node.parent);
  const src = u.lowers[node.lowers[0]];
  const origin = u.topStat(node);
  const tmp = u.work.tempName();
  try {
    await build(src, node.lowerPath, origin, u.work.fd, tmp, withData);
    copyMetadata(src, node.lowerPath, origin, u.work.fd, tmp);
    const parentRel = node.parent!.path();
    const parentSt = u.upper.stat(parentRel)!;
    u.upper.at(node.path(), (dirfd, name) =>
      native.renameat2(u.work.fd, tmp, dirfd, name, C.RENAME_NOREPLACE));
    u.upper.at(parentRel, (dirfd, name) => native.utimensat(dirfd, name, parentSt.atimeSec, parentSt.atimeNsec,
      parentSt.mtimeSec, parentSt.mtimeNsec, C.AT_SYMLINK_NOFOLLOW));
  } catch (err) {
    u.work.remove(tmp);
    throw err;
  }
  node.upper = true;
  const copy = u.topStat(node);
  u.inodes.copiedUp(origin, copy);
  // Directories keep their template number; a file gets the copy's unless remapped.
  if (node.type !== C.S_IFDIR) node.ino = u.inodes.of(copy);
}

async function build(src: Layer, rel: string, st: NativeStat, workfd: number, tmp: string, withData: boolean): Promise<void> {
  switch (st.mode & C.S_IFMT) {
    case C.S_IFREG: {
      const out = native.openat(workfd, tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_CLOEXEC, 0o600);
      try {
        if (withData) {
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
