// Removing a name from the merged tree. Where a template layer still has the
// name, the private layer must hide it with a whiteout, and it must appear in
// the same instant as the old object disappears: the whiteout is made in the
// work directory and swapped in with RENAME_EXCHANGE, so no reader ever sees
// the template's object come back, and the old private object (a file, or a
// directory holding only whiteouts) is removed from the work directory after.
import { native, C } from '../../native/index.js';
import type { Node } from './node.js';
import { join } from './paths.js';
import { changingNames } from './unified.js';
import type { Union } from './union.js';

export function makeWhiteout(dirfd: number, name: string): void {
  native.mknodat(dirfd, name, C.S_IFCHR, 0n);
}

/**
 * Hides parent/name, which is visible in the merged tree, and drops the
 * private object under it (a unified file's name too: unified.ts).
 */
export async function removeName(u: Union, parent: Node, name: string, node: Node): Promise<void> {
  const rel = join(parent.path(), name);
  const needWhiteout = u.lowerHas(parent, name);
  if (!node.upper) {
    u.upper.at(rel, (dirfd, n) => makeWhiteout(dirfd, n));
  } else {
    const st = u.topStat(node);
    const tmp = u.work.tempName();
    await changingNames(u, [rel], () => {
      if (needWhiteout) {
        makeWhiteout(u.work.fd, tmp);
        u.upper.at(rel, (dirfd, n) => native.renameat2(u.work.fd, tmp, dirfd, n, C.RENAME_EXCHANGE));
      } else if (node.type !== C.S_IFDIR) {
        u.upper.at(rel, (dirfd, n) => native.unlinkat(dirfd, n, 0));
      } else {
        // Its whiteouts may hide entries of a redirect: take it out whole, not entry by entry.
        u.upper.at(rel, (dirfd, n) => native.renameat2(dirfd, n, u.work.fd, tmp, C.RENAME_NOREPLACE));
      }
      // Still inside: the name moved to the work directory may belong to a unified inode.
      u.work.remove(tmp);
    });
    u.inodes.released(st);
  }
  parent.forget(name);
}
