// Unified files: private files that `vefs unify` hard-linked to identical
// files of other VEs (or of a template) and marked immutable, as
// Linux-VServer's immutable-unlink flag does. A VE must not be able to tell:
//
//  - a change to its content or metadata breaks the link first: the VE gets
//    its own copy, built in the work directory like any copy-up and published
//    over its name (copy-on-write); the other names keep the old inode;
//  - unlink and rename of the name work, and touch nobody else's copy.
//
// Mainline ext4's immutable flag refuses rename and unlink of any name of
// the inode, to root too, so every such change runs inside unify's mutable
// section (src/unify/section.ts): the host-wide lock, a journal, the flag
// cleared, the change, the flag set again while the inode is still shared.
// The flag itself is invisible in a VE: this binding answers no ioctl.
import { native, C } from '../../native/index.js';
import { inodeFlags, isImmutable } from '../unify/flags.js';
import { withMutableFds, type MutableEntry } from '../unify/section.js';
import type { Union } from './union.js';

/** An open descriptor of the private object at rel when it is a unified inode, else null. */
export function unifiedFd(u: Union, rel: string): number | null {
  const st = u.upper.stat(rel);
  // Only a regular file with more than one name can be unified: the cheap test first.
  if (!st || (st.mode & C.S_IFMT) !== C.S_IFREG || st.nlink < 2) return null;
  const fd = u.upper.open(rel, C.O_RDONLY | C.O_NONBLOCK);
  if (isImmutable(inodeFlags(fd))) return fd;
  native.close(fd);
  return null;
}

/** Runs fn, which renames or removes private names at rels, with the unified inodes among them made mutable. */
export async function changingNames<T>(u: Union, rels: string[], fn: () => T | Promise<T>): Promise<T> {
  const entries: MutableEntry[] = [];
  try {
    for (const rel of rels) {
      const fd = unifiedFd(u, rel);
      if (fd !== null) entries.push({ fd, path: `${u.upper.path}/${rel}` });
    }
    return entries.length === 0 ? await fn() : await withMutableFds(entries, fn);
  } finally {
    for (const e of entries) native.close(e.fd);
  }
}
