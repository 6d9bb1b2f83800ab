// The private tree's on-disk format: the kernel overlayfs upper-directory
// format (Documentation/filesystems/overlayfs.rst), so that kernel overlayfs
// mounts the same trees and sees the same files. Nothing else in VEFS knows
// these names.
//
//  - whiteout: a character device 0/0 hides the name in every lower layer
//    ("Whiteouts and opaque directories").
//  - opaque directory: xattr trusted.overlay.opaque = "y" hides the lower
//    directories of the same name.
//  - redirect: xattr trusted.overlay.redirect on a renamed directory names
//    where its lower content is, absolute from the root ("/a/b") or a single
//    relative name in the same parent ("Redirect dir", redirect_dir=on).
//  - metacopy file: a regular file holding only metadata (sparse, full size)
//    with xattr trusted.overlay.metacopy; its data is the template file at
//    the same path, or at its redirect ("Metadata only copy up",
//    metacopy=on). A kernel mount of such a tree needs metacopy=on.
//  - work directory: VEFS stages copy-ups in WORK/vefs, beside the kernel's
//    own WORK/work, so the two never clean each other's files.
import { C, type NativeStat } from '../../native/index.js';

export const XATTR_PREFIX = 'trusted.overlay.';
export const OPAQUE_XATTR = 'trusted.overlay.opaque';
export const REDIRECT_XATTR = 'trusted.overlay.redirect';
export const METACOPY_XATTR = 'trusted.overlay.metacopy';
export const OPAQUE_VALUE = Buffer.from('y');
export const WORK_SUBDIR = 'vefs';

export const WHITEOUT_MODE = C.S_IFCHR;
export const WHITEOUT_RDEV = 0n;

export function isWhiteout(st: NativeStat): boolean {
  return (st.mode & C.S_IFMT) === C.S_IFCHR && st.rdev === 0n;
}

/**
 * Only a non-empty file can be a metacopy file. Its block count proves
 * nothing: ext4 counts an external xattr block in it.
 */
export function isMetacopyCandidate(st: NativeStat): boolean {
  return st.size > 0;
}

/** overlayfs's own xattrs are private to the format: a VE never sees or sets them. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith(XATTR_PREFIX);
}

/** A redirect value resolved to a lower path relative to the layer root ("" is the root). */
export function resolveRedirect(value: string, parentLowerPath: string): string {
  if (value.startsWith('/')) return value.replace(/^\/+/, '');
  return parentLowerPath === '' ? value : `${parentLowerPath}/${value}`;
}

/** Always absolute: valid wherever the directory moves next. */
export function redirectValue(lowerPath: string): Buffer {
  return Buffer.from(`/${lowerPath}`);
}
