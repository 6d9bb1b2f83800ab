// The trees one unify run works on. A ROOT is a VE private tree, a plain VE
// root or a template; templates are marked (`--template DIR`), because their
// inodes are the ones kept and their content is never replaced.
import { resolve } from 'node:path';
import { native, C, type NativeError } from '../../native/index.js';
import { UnifyError } from './errors.js';
import { shown } from './bytes.js';

export interface Root {
  /** Absolute, as a byte string. */
  path: string;
  template: boolean;
  /** An O_PATH descriptor of the ROOT: everything below is reached beneath it, never by a path that a VE could redirect with a symlink. */
  fd: number;
  dev: bigint;
}

/** What openat2 needs to stay below a ROOT: no '..' out, no symlinks, no other mounts. */
export const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_XDEV;

const inside = (a: string, b: string): boolean => a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`);

/** Opens and checks the ROOTs (byte strings); one that is also a template is listed once, as a template. */
export function openRoots(plain: string[], templates: string[]): Root[] {
  const wanted = new Map<string, boolean>();
  for (const p of templates) wanted.set(resolve(p), true);
  for (const p of plain) if (!wanted.has(resolve(p))) wanted.set(resolve(p), false);
  if (wanted.size === 0) throw new UnifyError('EINVAL', 'no ROOT given');
  const roots: Root[] = [];
  try {
    for (const [path, template] of wanted) {
      const what = template ? 'template' : 'ROOT';
      let fd: number;
      try {
        fd = native.openat(C.AT_FDCWD, path, C.O_PATH | C.O_DIRECTORY, 0);
      } catch (err) {
        const code = (err as NativeError).code;
        if (code === 'ENOENT') throw new UnifyError('ENOENT', `${what} ${shown(path)} does not exist`);
        if (code === 'ENOTDIR') throw new UnifyError('ENOTDIR', `${what} ${shown(path)} is not a directory`);
        throw err;
      }
      // The canonical path keys the ROOT in the index, however it was spelled.
      const canonical = native.readlinkat(C.AT_FDCWD, `/proc/self/fd/${fd}`);
      const same = roots.find((r) => r.path === canonical);
      if (same) {
        same.template ||= template;
        native.close(fd);
      } else {
        roots.push({ path: canonical, template, fd, dev: native.fstat(fd).dev });
      }
    }
    for (const a of roots) {
      for (const b of roots) {
        if (a !== b && inside(a.path, b.path)) {
          throw new UnifyError('EOVERLAP', `${a.template ? 'template' : 'ROOT'} ${shown(a.path)} is inside ${b.template ? 'template' : 'ROOT'} ${shown(b.path)}`);
        }
      }
    }
    return roots;
  } catch (err) {
    closeRoots(roots);
    throw err;
  }
}

export function closeRoots(roots: Root[]): void {
  for (const r of roots) native.close(r.fd);
}
