// Inode flags as unify uses them: FS_IMMUTABLE_FL marks a unified inode.
import { native, C, type NativeError } from '../../native/index.js';

/** null on a filesystem without inode flags (nothing there is immutable). */
export function inodeFlags(fd: number): number | null {
  try {
    return native.getflags(fd);
  } catch (err) {
    if (['ENOTTY', 'EOPNOTSUPP', 'ENOSYS', 'EINVAL'].includes((err as NativeError).code)) return null;
    throw err;
  }
}

export const isImmutable = (flags: number | null): boolean => flags !== null && (flags & C.FS_IMMUTABLE_FL) !== 0;

export function setImmutable(fd: number, on: boolean): void {
  const flags = inodeFlags(fd);
  if (flags === null) return;
  const want = on ? flags | C.FS_IMMUTABLE_FL : flags & ~C.FS_IMMUTABLE_FL;
  if (want !== flags) native.setflags(fd, want);
}
