// A digest of a whole tree: every name, type, mode, owner, size, content,
// symlink target, device number, xattr and nanosecond time (atime included,
// ctime excluded when asked to). Equal digests before and after a workload
// prove a template was not touched, not even read-marked: the digest itself
// reads through a read-only noatime view, so it changes no atime either.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { native, toBytes } from '../../native/index.js';

export async function digestTree(root: string, opts: { ctime?: boolean } = {}): Promise<string> {
  const view = native.openTreeReadonly(toBytes(root));
  try {
    return await digestView(`/proc/self/fd/${view}`, opts);
  } finally {
    native.close(view);
  }
}

async function digestView(root: string, opts: { ctime?: boolean }): Promise<string> {
  const hash = createHash('sha256');
  // Names are byte strings (native/index.ts), handed to Node's fs as Buffers, so any name digests.
  const walk = async (rel: string): Promise<void> => {
    // The trailing slash of the root ("/proc/self/fd/N/") reaches the directory, not the magic link.
    const path = `${root}/${rel}`;
    const buf = Buffer.from(path, 'latin1');
    const st = await lstat(buf, { bigint: true });
    hash.update(Buffer.from(rel, 'latin1')).update(`\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.rdev}\0${st.mtimeNs}\0${st.atimeNs}\0`);
    if (opts.ctime) hash.update(`${st.ctimeNs}\0`);
    for (const name of native.llistxattr(path).sort()) {
      hash.update(`${name}=`).update(native.lgetxattr(path, name) ?? Buffer.alloc(0)).update('\0');
    }
    if (st.isSymbolicLink()) hash.update(await readlink(buf, { encoding: 'buffer' }));
    else if (st.isFile()) hash.update(await readFile(buf));
    else if (st.isDirectory()) {
      const names = (await readdir(buf, { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort();
      for (const name of names) await walk(rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk('');
  return hash.digest('hex');
}
