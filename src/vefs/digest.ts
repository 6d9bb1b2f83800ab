// A digest of a whole tree: every name, type, mode, owner, size, content,
// symlink target, device number, xattr and nanosecond time (atime included,
// ctime excluded when asked to). Equal digests before and after a workload
// prove a template was not touched, not even read-marked: the digest itself
// reads through a read-only noatime view, so it changes no atime either.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { native } from '../../native/index.js';

export async function digestTree(root: string, opts: { ctime?: boolean } = {}): Promise<string> {
  const view = native.openTreeReadonly(root);
  try {
    return await digestView(`/proc/self/fd/${view}`, opts);
  } finally {
    native.close(view);
  }
}

async function digestView(root: string, opts: { ctime?: boolean }): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    // The trailing slash of the root ("/proc/self/fd/N/") reaches the directory, not the magic link.
    const path = `${root}/${rel}`;
    const st = await lstat(path, { bigint: true });
    hash.update(`${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.rdev}\0${st.mtimeNs}\0${st.atimeNs}\0`);
    if (opts.ctime) hash.update(`${st.ctimeNs}\0`);
    for (const name of native.llistxattr(path).sort()) {
      hash.update(`${name}=`).update(native.lgetxattr(path, name) ?? Buffer.alloc(0)).update('\0');
    }
    if (st.isSymbolicLink()) hash.update(await readlink(path));
    else if (st.isFile()) hash.update(await readFile(path));
    else if (st.isDirectory()) {
      for (const name of (await readdir(path)).sort()) await walk(join(rel, name));
    }
  };
  await walk('');
  return hash.digest('hex');
}
