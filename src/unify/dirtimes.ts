// Replacing a name touches its directory's mtime; a VE did not change its
// directory, so the times go back afterwards (as VEFS's copy-up does). A VE
// that changes the same directory in the same instant may see its own mtime
// change undone: the window is one rename.
import { native, C, type NativeStat } from '../../native/index.js';

/** Puts back the times a directory (dirfd, O_PATH is enough) had before names in it were replaced. */
export function restoreDirTimes(dirfd: number, before: NativeStat): void {
  const after = native.fstat(dirfd);
  if (after.mtimeSec !== before.mtimeSec || after.mtimeNsec !== before.mtimeNsec) {
    native.utimensat(dirfd, '', before.atimeSec, before.atimeNsec, before.mtimeSec, before.mtimeNsec, C.AT_EMPTY_PATH);
  }
}
