// The staging area: WORK/vefs on the private tree's filesystem. Everything
// that must appear in the private tree at once (a copied-up file, a new
// directory with its owner and xattrs, an opaque directory replacing a
// whiteout) is built here under a temporary name and published with one
// rename, so a crash at any moment leaves the old object or the complete new
// one. Whatever a crash left here is removed when the next mount starts.
import { rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { native, C, toBytes } from '../../native/index.js';
import { WORK_SUBDIR } from './format.js';

export class WorkDir {
  readonly fd: number;
  readonly path: string;

  constructor(workDir: string) {
    this.path = `${workDir}/${WORK_SUBDIR}`;
    // Safe to do synchronously: the work directory is never on a VEFS mount (config.ts checks).
    rmSync(this.path, { recursive: true, force: true });
    mkdirSync(this.path, { recursive: true, mode: 0o700 });
    this.fd = native.openat(C.AT_FDCWD, toBytes(this.path), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  }

  /** A fresh name in the staging area. */
  tempName(): string {
    return `#${randomBytes(8).toString('hex')}`;
  }

  /** Removes a staged tree (a directory moved out of the private tree holds only whiteouts, or nothing). */
  remove(name: string): void {
    rmSync(`${this.path}/${name}`, { recursive: true, force: true });
  }

  close(): void {
    native.close(this.fd);
  }
}
