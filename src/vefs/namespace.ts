// Names: create, link, remove and rename in the merged tree.
//
// Every new object is built in the work directory with its owner (and, for
// a directory that replaces a whiteout, the opaque mark) and then published
// with one rename, so it never appears half made. A whiteout under the name
// is replaced by the publish itself: a non-directory renames over it, a
// directory is exchanged with it and the whiteout removed after.
//
// Renames never answer EXDEV: a directory with template content is copied up
// alone (not its children) and carries a redirect to where its template
// content is, as overlayfs does with redirect_dir=on.
import { native, C } from '../../native/index.js';
import { copyUp } from './copyup.js';
import { fsError } from './errors.js';
import { OPAQUE_VALUE, OPAQUE_XATTR, REDIRECT_XATTR, isWhiteout, redirectValue } from './format.js';
import type { Node } from './node.js';
import { join } from './paths.js';
import { isEmptyDir } from './readdir.js';
import type { Caller } from './types.js';
import type { Union } from './union.js';
import { makeWhiteout, removeName } from './whiteout.js';
import { changingNames } from './unified.js';

const S_ISGID = 0o2000;

/** Prepares a name for a new object: parent in the private layer, name free. */
async function prepare(u: Union, parent: Node, name: string): Promise<void> {
  if (parent.type !== C.S_IFDIR) throw fsError('ENOTDIR');
  if (u.exists(parent, name)) throw fsError('EEXIST');
  await copyUp(u, parent, 'meta');
}

/** New objects belong to the caller; in a set-group-ID directory to its group, as on ext4. */
function ownerIn(u: Union, parent: Node, caller: Caller): { uid: number; gid: number; sgid: boolean } {
  const st = u.topStat(parent);
  const sgid = (st.mode & S_ISGID) !== 0;
  return { uid: caller.uid, gid: sgid ? st.gid : caller.gid, sgid };
}

/** Publishes staged work/tmp as parent/name, replacing a whiteout if one stands there. */
function publish(u: Union, parent: Node, name: string, tmp: string, isDir: boolean): void {
  const rel = join(parent.path(), name);
  const under = u.upper.stat(rel);
  const whiteout = under !== null && isWhiteout(under);
  u.upper.at(rel, (dirfd, n) => {
    if (!whiteout) native.renameat2(u.work.fd, tmp, dirfd, n, C.RENAME_NOREPLACE);
    else if (!isDir) native.renameat2(u.work.fd, tmp, dirfd, n, 0);
    else {
      native.renameat2(u.work.fd, tmp, dirfd, n, C.RENAME_EXCHANGE);
      native.unlinkat(u.work.fd, tmp, 0);
    }
  });
  parent.forget(name);
}

/** Stages an object with make(workfd, tmp), gives it its owner and publishes it. */
async function createWith(u: Union, parent: Node, name: string, caller: Caller, isDir: boolean,
  make: (workfd: number, tmp: string) => void): Promise<Node> {
  await prepare(u, parent, name);
  const owner = ownerIn(u, parent, caller);
  const tmp = u.work.tempName();
  try {
    make(u.work.fd, tmp);
    native.fchownat(u.work.fd, tmp, owner.uid, owner.gid, C.AT_SYMLINK_NOFOLLOW);
    if (isDir) {
      if (owner.sgid) {
        const st = native.fstatat(u.work.fd, tmp, 0);
        native.fchmodat(u.work.fd, tmp, (st.mode & 0o7777) | S_ISGID, 0);
      }
      // Template directories of the same name were deleted by the VE: they must stay hidden.
      if (u.lowerHas(parent, name)) native.lsetxattr(`/proc/self/fd/${u.work.fd}/${tmp}`, OPAQUE_XATTR, OPAQUE_VALUE, 0);
    }
    publish(u, parent, name, tmp, isDir);
  } catch (err) {
    u.work.remove(tmp);
    throw err;
  }
  return u.lookup(parent, name);
}

export function mkdir(u: Union, parent: Node, name: string, mode: number, caller: Caller): Promise<Node> {
  return createWith(u, parent, name, caller, true, (fd, tmp) => native.mkdirat(fd, tmp, mode & 0o7777));
}

export function mknod(u: Union, parent: Node, name: string, mode: number, rdev: bigint, caller: Caller): Promise<Node> {
  return createWith(u, parent, name, caller, false, (fd, tmp) => native.mknodat(fd, tmp, mode, rdev));
}

export function symlink(u: Union, parent: Node, name: string, target: string, caller: Caller): Promise<Node> {
  return createWith(u, parent, name, caller, false, (fd, tmp) => native.symlinkat(target, fd, tmp));
}

/** Creates and opens a regular file; the descriptor stays valid across the publish. */
export async function create(u: Union, parent: Node, name: string, mode: number, flags: number,
  caller: Caller): Promise<{ node: Node; fd: number }> {
  let fd = -1;
  const accmode = flags & (C.O_WRONLY | C.O_RDWR);
  const keep = flags & (C.O_APPEND | C.O_NONBLOCK);
  try {
    const node = await createWith(u, parent, name, caller, false, (wfd, tmp) => {
      fd = native.openat(wfd, tmp, accmode | keep | C.O_CREAT | C.O_EXCL | C.O_CLOEXEC, mode & 0o7777);
    });
    return { node, fd };
  } catch (err) {
    if (fd >= 0) native.close(fd);
    throw err;
  }
}

export async function link(u: Union, node: Node, parent: Node, name: string): Promise<Node> {
  if (node.type === C.S_IFDIR) throw fsError('EPERM');
  await prepare(u, parent, name);
  await copyUp(u, node, 'data');
  const tmp = u.work.tempName();
  u.upper.at(node.path(), (d, n) => native.linkat(d, n, u.work.fd, tmp, 0));
  try {
    publish(u, parent, name, tmp, false);
  } catch (err) {
    native.unlinkat(u.work.fd, tmp, 0);
    throw err;
  }
  return u.lookup(parent, name);
}

export async function unlink(u: Union, parent: Node, name: string): Promise<void> {
  const node = u.lookup(parent, name);
  if (node.type === C.S_IFDIR) throw fsError('EISDIR');
  await copyUp(u, parent, 'meta');
  await removeName(u, parent, name, node);
}

export async function rmdir(u: Union, parent: Node, name: string): Promise<void> {
  const node = u.lookup(parent, name);
  if (node.type !== C.S_IFDIR) throw fsError('ENOTDIR');
  if (!isEmptyDir(u, node)) throw fsError('ENOTEMPTY');
  await copyUp(u, parent, 'meta');
  await removeName(u, parent, name, node);
}

function isAncestor(a: Node, b: Node): boolean {
  for (let n: Node | null = b; n; n = n.parent) if (n === a) return true;
  return false;
}

/**
 * Marks an object about to take a new name so that it keeps exactly its own
 * content there. A directory: a redirect to its template content, or opaque
 * if it has none and the new name has template content of its own. A
 * metacopy file: a redirect to its data.
 */
function markMoved(u: Union, node: Node, newParent: Node, newName: string): void {
  const xattr = (name: string, value: Buffer): void =>
    u.upper.atPath(node.path(), (p) => native.lsetxattr(p, name, value, 0));
  if (node.metacopy) xattr(REDIRECT_XATTR, redirectValue(node.lowerPath));
  if (node.type !== C.S_IFDIR) return;
  if (node.lowers.length > 0) xattr(REDIRECT_XATTR, redirectValue(node.lowerPath));
  else if (u.lowerHas(newParent, newName)) xattr(OPAQUE_XATTR, OPAQUE_VALUE);
}

/** A rename inside the private layer; either name may be a unified file's (unified.ts). */
function renameUpper(u: Union, oldRel: string, newRel: string, flags: number): Promise<void> {
  return changingNames(u, [oldRel, newRel], () =>
    u.upper.at(oldRel, (od, on) => u.upper.at(newRel, (nd, nn) => native.renameat2(od, on, nd, nn, flags))));
}

export async function rename(u: Union, oldParent: Node, oldName: string, newParent: Node, newName: string,
  flags: number): Promise<void> {
  const known = C.RENAME_NOREPLACE | C.RENAME_EXCHANGE;
  if ((flags & ~known) !== 0 || flags === known) throw fsError('EINVAL');
  const src = u.lookup(oldParent, oldName);
  const dst = u.exists(newParent, newName);
  if (newParent.type !== C.S_IFDIR) throw fsError('ENOTDIR');
  if (src.type === C.S_IFDIR && isAncestor(src, newParent)) throw fsError('EINVAL');
  if (dst && dst.type === C.S_IFDIR && isAncestor(dst, oldParent)) throw fsError('ENOTEMPTY');
  if (flags & C.RENAME_NOREPLACE && dst) throw fsError('EEXIST');
  if (flags & C.RENAME_EXCHANGE) {
    if (!dst) throw fsError('ENOENT');
    return exchange(u, oldParent, oldName, src, newParent, newName, dst);
  }
  if (dst) {
    if (dst === src || (dst.ino === src.ino && src.type !== C.S_IFDIR)) return;
    if (src.type === C.S_IFDIR && dst.type !== C.S_IFDIR) throw fsError('ENOTDIR');
    if (src.type !== C.S_IFDIR && dst.type === C.S_IFDIR) throw fsError('EISDIR');
    if (dst.type === C.S_IFDIR && !isEmptyDir(u, dst)) throw fsError('ENOTEMPTY');
  }
  await copyUp(u, newParent, 'meta');
  await copyUp(u, src, 'name');
  const oldRel = join(oldParent.path(), oldName);
  const newRel = join(newParent.path(), newName);
  const whiteoutOld = u.lowerHas(oldParent, oldName);
  markMoved(u, src, newParent, newName);

  let under = u.upper.stat(newRel);
  const staged: string[] = [];
  if (src.type === C.S_IFDIR && under && (under.mode & C.S_IFMT) === C.S_IFDIR) {
    // An empty-looking directory may still hold whiteouts: swap it out for a whiteout first.
    const tmp = u.work.tempName();
    makeWhiteout(u.work.fd, tmp);
    u.upper.at(newRel, (d, n) => native.renameat2(u.work.fd, tmp, d, n, C.RENAME_EXCHANGE));
    staged.push(tmp);
    under = u.upper.stat(newRel);
  }
  const replaced = dst && dst.upper && dst.type !== C.S_IFDIR ? u.topStat(dst) : null;
  if (src.type === C.S_IFDIR && under && isWhiteout(under)) {
    // A directory cannot rename over a device node: exchange, leaving the whiteout at the old name.
    await renameUpper(u, oldRel, newRel, C.RENAME_EXCHANGE);
    if (!whiteoutOld) u.upper.at(oldRel, (d, n) => native.unlinkat(d, n, 0));
  } else {
    await renameUpper(u, oldRel, newRel, whiteoutOld ? C.RENAME_WHITEOUT : 0);
  }
  if (replaced) u.inodes.released(replaced);
  for (const tmp of staged) u.work.remove(tmp);
  oldParent.forget(oldName);
  moveNode(src, newParent, newName);
}

/**
 * The object keeps its node under the new name, so that a binding holding
 * nodes by ID (the kernel protocol's node IDs survive a rename) still finds
 * it, and the paths of its cached descendants follow.
 */
function moveNode(node: Node, parent: Node, name: string): void {
  parent.forget(name);
  node.parent = parent;
  node.name = name;
  parent.children.set(name, node);
}

async function exchange(u: Union, oldParent: Node, oldName: string, a: Node, newParent: Node, newName: string,
  b: Node): Promise<void> {
  await copyUp(u, a, 'name');
  await copyUp(u, b, 'name');
  markMoved(u, a, newParent, newName);
  markMoved(u, b, oldParent, oldName);
  const oldRel = join(oldParent.path(), oldName);
  const newRel = join(newParent.path(), newName);
  await renameUpper(u, oldRel, newRel, C.RENAME_EXCHANGE);
  moveNode(a, newParent, newName);
  moveNode(b, oldParent, oldName);
}
