// A layer is a data source: a directory handle and calls relative to it.
// Every call resolves the parent directory with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS) and acts on the last name with *at(..., NOFOLLOW), so
// no symlink in a tree, planted by a VE or raced in by anyone, ever leads the
// server outside the layer. A template layer is reached through a private
// read-only, noatime clone of its mount (native openTreeReadonly): the kernel
// itself refuses every write, and no read (readlink and getdents included,
// which O_NOATIME cannot cover) changes even an atime.
import { native, C, toBytes, type NativeStat, type NativeDirent } from '../../native/index.js';
import { hasCode } from './errors.js';
import { split } from './paths.js';

const RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;

export type LayerKind = 'private' | 'template';

export class Layer {
  readonly fd: number;
  readonly dev: bigint;
  constructor(readonly path: string, readonly kind: LayerKind, readonly index: number) {
    this.fd = kind === 'template' ? native.openTreeReadonly(toBytes(path)) : native.openat(C.AT_FDCWD, toBytes(path), DIR_PATH, 0);
    this.dev = native.fstat(this.fd).dev;
  }

  close(): void {
    native.close(this.fd);
  }

  /** Runs fn(dirfd, name) on the parent of rel; the root itself is (fd, "."). */
  at<T>(rel: string, fn: (dirfd: number, name: string) => T): T {
    if (rel === '') return fn(this.fd, '.');
    const { parent, name } = split(rel);
    if (parent === '') return fn(this.fd, name);
    const dirfd = native.openat2(this.fd, parent, DIR_PATH, 0, RESOLVE);
    try {
      return fn(dirfd, name);
    } finally {
      native.close(dirfd);
    }
  }

  /** Like at(), for calls that take a path (the l*xattr family): /proc/self/fd/N/name. */
  atPath<T>(rel: string, fn: (path: string) => T): T {
    return this.at(rel, (dirfd, name) => fn(`/proc/self/fd/${dirfd}/${name}`));
  }

  /** The object at rel, or null where nothing is (ENOENT, or ENOTDIR through a file). */
  stat(rel: string): NativeStat | null {
    try {
      return this.at(rel, (d, n) => native.fstatat(d, n, C.AT_SYMLINK_NOFOLLOW));
    } catch (err) {
      if (hasCode(err, 'ENOENT', 'ENOTDIR')) return null;
      throw err;
    }
  }

  open(rel: string, flags: number, mode = 0): number {
    const f = flags | C.O_NOFOLLOW | C.O_CLOEXEC;
    if (rel === '') return native.openat(this.fd, '.', f, mode);
    return native.openat2(this.fd, rel, f, mode, RESOLVE);
  }

  readdir(rel: string): NativeDirent[] {
    const fd = this.open(rel, C.O_RDONLY | C.O_DIRECTORY);
    try {
      return native.getdents(fd);
    } finally {
      native.close(fd);
    }
  }

  readlink(rel: string): string {
    return this.at(rel, (d, n) => native.readlinkat(d, n));
  }

  getxattr(rel: string, name: string): Buffer | null {
    return this.atPath(rel, (p) => native.lgetxattr(p, name));
  }

  listxattr(rel: string): string[] {
    return this.atPath(rel, (p) => native.llistxattr(p));
  }
}
