// May two files become one inode? A pure decision over what a VE can observe
// of a file apart from st_ino, st_nlink and st_ctime. Content is compared
// afterwards, and last (prepareLinks, link.ts), because it is the costly part.
//
// Not compared: atime (reading moves it, and no tool keeps it; the kept
// inode's atime is what every name shows) and ctime (any link changes it).
// mtime is compared unless the caller relaxes it (--ignore-mtime).
import { C } from '../../native/index.js';

export interface FileFacts {
  dev: bigint;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Digest of every xattr (xattrs.ts); empty for none. */
  xattrs: Buffer;
  /** overlayfs metacopy: the bytes on disk are not the file's content. */
  metacopy: boolean;
}

export interface PredicateOptions {
  ignoreMtime: boolean;
}

export type Refusal =
  | 'not-regular' | 'empty' | 'metacopy' | 'other-filesystem' | 'size'
  | 'mode' | 'owner' | 'group' | 'mtime' | 'xattrs';

/** null when the two may be linked, else the first reason they may not. */
export function mayLink(a: FileFacts, b: FileFacts, opts: PredicateOptions): Refusal | null {
  if ((a.mode & C.S_IFMT) !== C.S_IFREG || (b.mode & C.S_IFMT) !== C.S_IFREG) return 'not-regular';
  if (a.size === 0 || b.size === 0) return 'empty';
  if (a.metacopy || b.metacopy) return 'metacopy';
  if (a.dev !== b.dev) return 'other-filesystem';
  if (a.size !== b.size) return 'size';
  if (a.mode !== b.mode) return 'mode';
  if (a.uid !== b.uid) return 'owner';
  if (a.gid !== b.gid) return 'group';
  if (!opts.ignoreMtime && (a.mtimeSec !== b.mtimeSec || a.mtimeNsec !== b.mtimeNsec)) return 'mtime';
  if (!a.xattrs.equals(b.xattrs)) return 'xattrs';
  return null;
}
