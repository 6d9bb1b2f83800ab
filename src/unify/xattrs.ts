// A file's extended attributes as one comparable digest. Every attribute
// counts (security.*, trusted.*, user.*, system.posix_acl_*): two files that
// differ in any of them are not the same file to a VE.
import { native } from '../../native/index.js';
import { withHasher } from './hash.js';

/** overlayfs's mark of a file whose data is still in the layer below: its own bytes are not its content. */
export const METACOPY = 'trusted.overlay.metacopy';

export interface XattrFacts {
  /** Empty when the file has no xattrs. */
  digest: Buffer;
  metacopy: boolean;
}

const EMPTY = Buffer.alloc(0);

/** What a file without extended attributes has. */
export const NO_XATTRS: XattrFacts = { digest: EMPTY, metacopy: false };

function digestOf(names: string[], get: (name: string) => Buffer | null): XattrFacts {
  if (names.length === 0) return NO_XATTRS;
  const digest = withHasher((h) => {
    for (const name of [...names].sort()) {
      const value = get(name) ?? EMPTY;
      const head = Buffer.alloc(4);
      head.writeUInt32LE(value.length);
      h.update(Buffer.from(`${name}\0`, 'latin1'));
      h.update(head);
      h.update(value);
    }
  });
  return { digest, metacopy: names.includes(METACOPY) };
}

/** Through a path (a byte string); a final symlink is not followed. */
export function pathXattrs(path: string): XattrFacts {
  return digestOf(native.llistxattr(path), (n) => native.lgetxattr(path, n));
}

export function fdXattrs(fd: number): XattrFacts {
  return digestOf(native.flistxattr(fd), (n) => native.fgetxattr(fd, n));
}

/** Copies every xattr of one open file onto another (after its owner is set: chown drops security.capability). */
export function copyXattrs(from: number, to: number): void {
  for (const name of native.flistxattr(from)) native.fsetxattr(to, name, native.fgetxattr(from, name) ?? EMPTY, 0);
}
