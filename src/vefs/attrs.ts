// Attributes and xattrs of nodes. Reading answers from the visible object;
// every change copies the node up first and then changes the private copy.
// overlayfs's own xattrs (format.ts) are invisible and cannot be set through
// the mount, as on a kernel overlay mount.
import { native, C, type NativeStat } from '../../native/index.js';
import { copyUp } from './copyup.js';
import { fsError } from './errors.js';
import { isPrivateXattr } from './format.js';
import { inodeFlags } from '../unify/flags.js';
import type { Node } from './node.js';
import type { Attr, Statfs, Timespec } from './types.js';
import type { Union } from './union.js';

const NS = 1_000_000_000n;

export function toAttr(node: Node, st: NativeStat): Attr {
  // overlayfs reports 1 link for a merged directory: its subdirectories are spread over layers.
  const merged = node.type === C.S_IFDIR && node.lowers.length + (node.upper ? 1 : 0) > 1;
  return {
    ino: node.ino,
    mode: st.mode,
    nlink: merged ? 1 : st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
    size: st.size,
    blksize: st.blksize,
    blocks: st.blocks,
    atimeNs: BigInt(st.atimeSec) * NS + BigInt(st.atimeNsec),
    mtimeNs: BigInt(st.mtimeSec) * NS + BigInt(st.mtimeNsec),
    ctimeNs: BigInt(st.ctimeSec) * NS + BigInt(st.ctimeNsec),
  };
}

export function getattr(u: Union, node: Node): Attr {
  const st = u.topStat(node);
  if (node.metacopy) {
    // The blocks are where the data is, as overlayfs reports them.
    const { layer, rel } = u.dataLayer(node);
    st.blocks = layer.stat(rel)?.blocks ?? st.blocks;
  }
  return toAttr(node, st);
}

export async function chmod(u: Union, node: Node, mode: number): Promise<void> {
  await copyUp(u, node, 'meta');
  u.upper.at(node.path(), (d, n) => native.fchmodat(d, n, mode & 0o7777, C.AT_SYMLINK_NOFOLLOW));
}

/** uid or gid of -1 (0xffffffff) leaves that one unchanged, as chown(2). */
export async function chown(u: Union, node: Node, uid: number, gid: number): Promise<void> {
  await copyUp(u, node, 'meta');
  u.upper.at(node.path(), (d, n) => native.fchownat(d, n, uid, gid, C.AT_SYMLINK_NOFOLLOW));
}

export async function utimens(u: Union, node: Node, atime: Timespec, mtime: Timespec): Promise<void> {
  await copyUp(u, node, 'meta');
  u.upper.at(node.path(), (d, n) =>
    native.utimensat(d, n, atime.sec, atime.nsec, mtime.sec, mtime.nsec, C.AT_SYMLINK_NOFOLLOW));
}

export async function truncate(u: Union, node: Node, size: number): Promise<void> {
  if (node.type === C.S_IFDIR) throw fsError('EISDIR');
  if (node.type !== C.S_IFREG) throw fsError('EINVAL');
  await copyUp(u, node, size > 0 ? 'data' : 'empty');
  const fd = u.upper.open(node.path(), C.O_WRONLY);
  try {
    native.ftruncate(fd, size);
  } finally {
    native.close(fd);
  }
}

export function getxattr(u: Union, node: Node, name: string): Buffer {
  if (isPrivateXattr(name)) throw fsError('EOPNOTSUPP');
  const { layer, rel } = u.topLayer(node);
  const value = layer.getxattr(rel, name);
  if (!value) throw fsError('ENODATA');
  return value;
}

export function listxattr(u: Union, node: Node): string[] {
  const { layer, rel } = u.topLayer(node);
  return layer.listxattr(rel).filter((n) => !isPrivateXattr(n));
}

export async function setxattr(u: Union, node: Node, name: string, value: Buffer, flags: number): Promise<void> {
  if (isPrivateXattr(name)) throw fsError('EOPNOTSUPP');
  await copyUp(u, node, 'meta');
  u.upper.atPath(node.path(), (p) => native.lsetxattr(p, name, value, flags));
}

export async function removexattr(u: Union, node: Node, name: string): Promise<void> {
  if (isPrivateXattr(name)) throw fsError('EOPNOTSUPP');
  // Removing what is not there must not copy up.
  getxattr(u, node, name);
  await copyUp(u, node, 'meta');
  u.upper.atPath(node.path(), (p) => native.lremovexattr(p, name));
}

/**
 * The inode flags lsattr shows. In the private tree only unify sets the
 * immutable flag (a VE cannot set flags), and a VE must not see it (unified.ts).
 */
export function flags(u: Union, node: Node): number {
  if (node.type !== C.S_IFREG && node.type !== C.S_IFDIR) throw fsError('ENOTTY');
  const { layer, rel } = u.topLayer(node);
  const fd = layer.open(rel, C.O_RDONLY | C.O_NONBLOCK);
  try {
    const f = inodeFlags(fd);
    if (f === null) throw fsError('ENOTTY');
    return node.upper ? f & ~C.FS_IMMUTABLE_FL : f;
  } finally {
    native.close(fd);
  }
}

/** The private tree's filesystem: that is where a VE's writes go. */
export function statfs(u: Union): Statfs {
  const s = native.fstatfs(u.upper.fd);
  return {
    bsize: s.bsize,
    frsize: s.frsize,
    blocks: s.blocks,
    bfree: s.bfree,
    bavail: s.bavail,
    files: s.files,
    ffree: s.ffree,
    favail: s.ffree,
    fsid: Number(s.fsid & 0xffffffffn),
    flag: s.flags,
    namemax: s.namemax,
  };
}
