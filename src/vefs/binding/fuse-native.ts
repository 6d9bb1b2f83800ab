// The fuse-native binding: libfuse 2.9's high-level, path-based API through
// fuse-native (patched: native/patches). It only translates: each handler
// resolves paths into nodes, calls one VefsFs method and answers with its
// result or its errno. Every rule lives in VefsFs.
//
// Limits of this binding (libfuse 2.9 high-level API), answered as the
// kernel expects from a filesystem without them:
//  - renameat2 flags (NOREPLACE, EXCHANGE, WHITEOUT): libfuse 2.9 does not
//    know FUSE_RENAME2; it answers ENOSYS and the kernel returns EINVAL.
//  - fallocate, lseek (SEEK_DATA/SEEK_HOLE), copy_file_range, ioctl (so no
//    lsattr/chattr), POSIX ACL enforcement (no FUSE_POSIX_ACL): ENOSYS/
//    EOPNOTSUPP; the kernel falls back where it can (generic lseek, a
//    read/write loop for copy_file_range). ACL xattrs are stored and read
//    back exactly, but only mode bits are enforced (default_permissions).
//  - Requests on one mount run at most `inFlight` at once, so a busy mount
//    cannot starve the others that share this process.
import PQueue from 'p-queue';
import { errnoOf } from '../errors.js';
import type { VefsFs } from '../fs.js';
import type { Handle } from '../files.js';
import type { Attr, Caller } from '../types.js';
import { Fuse, type FuseInstance, type FuseOperations, type FuseStat } from './fuse-native-api.js';

export interface BindingOptions {
  /** Most requests of this mount being served at once. */
  inFlight: number;
  /** Where unexpected errors go; they answer EIO. */
  log: (message: string) => void;
  /** Identifies the mount in /proc/mounts (its "source" column). */
  fsname: string;
}

export interface BoundMount {
  readonly mountpoint: string;
  unmount(): Promise<void>;
}

function toStat(a: Attr): FuseStat {
  return {
    mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, ino: a.ino, rdev: a.rdev,
    blksize: a.blksize, blocks: a.blocks, atimeNs: a.atimeNs, mtimeNs: a.mtimeNs, ctimeNs: a.ctimeNs,
  };
}

/** The caller of the request being served: only valid synchronously at the start of its handler. */
function caller(): Caller {
  const { uid, gid } = Fuse.context();
  return { uid, gid };
}

/**
 * A handler that throws before it has answered would leave its libfuse
 * thread, and the VE's system call, waiting forever: answer EIO and log it.
 */
function guarded(ops: FuseOperations, log: (m: string) => void): FuseOperations {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(ops) as [string, (...a: unknown[]) => void][]) {
    out[name] = (...args: unknown[]) => {
      try {
        fn(...args);
      } catch (err) {
        log(`${name}: unexpected error, answered EIO: ${(err as Error)?.stack ?? err}`);
        (args[args.length - 1] as (e: number) => void)(-5);
      }
    };
  }
  return out as FuseOperations;
}

export function mountFuseNative(fs: VefsFs, mountpoint: string, opts: BindingOptions): Promise<BoundMount> {
  const queue = new PQueue({ concurrency: opts.inFlight });
  const handles = new Map<number, Handle>();

  const failure = (op: string, path: string | null, err: unknown): number => {
    const errno = errnoOf(err);
    if (errno !== undefined) return -errno;
    opts.log(`${mountpoint}: ${op} ${path ?? ''}: unexpected error, answered EIO: ${(err as Error)?.stack ?? err}`);
    return -5;
  };
  // One request: run it under the mount's in-flight bound, answer its value or its errno.
  const serve = <T>(op: string, path: string | null, work: () => T | Promise<T>,
    reply: (err: number, value?: T) => void): void => {
    void queue.add(async () => {
      let value: T;
      try {
        value = await work();
      } catch (err) {
        reply(failure(op, path, err));
        return;
      }
      reply(0, value);
    });
  };
  const handle = (fd: number): Handle => {
    const h = handles.get(fd);
    if (!h) throw Object.assign(new Error(`no open handle ${fd}`), { code: 'EBADF' });
    return h;
  };
  const node = (path: string) => fs.resolve(path);
  const parent = (path: string) => fs.resolveParent(path);
  const opened = (h: Handle): number => {
    handles.set(h.fd, h);
    return h.fd;
  };

  const ops: FuseOperations = {
    getattr: (path, cb) => serve('getattr', path, () => toStat(fs.getattr(node(path))), cb),
    fgetattr: (path, fd, cb) => serve('fgetattr', path, () => toStat(fs.fgetattr(handle(fd))), cb),
    readlink: (path, cb) => serve('readlink', path, () => fs.readlink(node(path)), cb),
    readdir: (path, cb) => serve('readdir', path, () => {
      const dir = node(path);
      const entries = fs.readdir(dir);
      const names = ['.', '..', ...entries.map((e) => e.name)];
      const up = dir.parent ?? dir;
      const stats: FuseStat[] = [
        { ino: dir.ino, mode: dir.type }, { ino: up.ino, mode: up.type },
        ...entries.map((e) => ({ ino: e.ino, mode: e.type })),
      ];
      return { names, stats };
    }, (err, r) => cb(err, r?.names, r?.stats)),
    statfs: (path, cb) => serve('statfs', path, () => fs.statfs(), cb),

    open: (path, flags, cb) => serve('open', path, async () => opened(await fs.open(node(path), flags)), cb),
    create: (path, mode, flags, cb) => {
      const who = caller();
      serve('create', path, async () => {
        const { parent: p, name } = parent(path);
        return opened(await fs.create(p, name, mode, flags, who));
      }, cb);
    },
    read: (path, fd, buf, len, pos, cb) =>
      serve('read', path, () => fs.read(handle(fd), buf, len, pos), (err, n) => cb(err || n!)),
    write: (path, fd, buf, len, pos, cb) =>
      serve('write', path, () => fs.write(handle(fd), buf, len, pos), (err, n) => cb(err || n!)),
    flush: (_path, _fd, cb) => cb(0),
    fsync: (path, datasync, fd, cb) => serve('fsync', path, () => fs.fsync(handle(fd), datasync !== 0), cb),
    release: (path, fd, cb) => serve('release', path, async () => {
      const h = handle(fd);
      handles.delete(fd);
      await fs.release(h);
    }, cb),
    ftruncate: (path, fd, size, cb) => serve('ftruncate', path, () => fs.ftruncate(handle(fd), size), cb),
    truncate: (path, size, cb) => serve('truncate', path, () => fs.truncate(node(path), size), cb),

    chmod: (path, mode, cb) => serve('chmod', path, () => fs.chmod(node(path), mode), cb),
    chown: (path, uid, gid, cb) => serve('chown', path, () => fs.chown(node(path), uid, gid), cb),
    utimens: (path, atime, mtime, cb) => serve('utimens', path, () => fs.utimens(node(path), atime, mtime), cb),
    getxattr: (path, name, _pos, cb) => serve('getxattr', path, () => fs.getxattr(node(path), name), cb),
    listxattr: (path, cb) => serve('listxattr', path, () => fs.listxattr(node(path)), cb),
    setxattr: (path, name, value, _pos, flags, cb) =>
      serve('setxattr', path, () => fs.setxattr(node(path), name, value, flags), cb),
    removexattr: (path, name, cb) => serve('removexattr', path, () => fs.removexattr(node(path), name), cb),

    mkdir: (path, mode, cb) => {
      const who = caller();
      serve('mkdir', path, async () => {
        const { parent: p, name } = parent(path);
        await fs.mkdir(p, name, mode, who);
      }, cb);
    },
    mknod: (path, mode, dev, cb) => {
      const who = caller();
      serve('mknod', path, async () => {
        const { parent: p, name } = parent(path);
        await fs.mknod(p, name, mode, BigInt(dev), who);
      }, cb);
    },
    symlink: (target, path, cb) => {
      const who = caller();
      serve('symlink', path, async () => {
        const { parent: p, name } = parent(path);
        await fs.symlink(p, name, target, who);
      }, cb);
    },
    link: (src, dest, cb) => serve('link', dest, async () => {
      const { parent: p, name } = parent(dest);
      await fs.link(node(src), p, name);
    }, cb),
    unlink: (path, cb) => serve('unlink', path, () => {
      const { parent: p, name } = parent(path);
      return fs.unlink(p, name);
    }, cb),
    rmdir: (path, cb) => serve('rmdir', path, () => {
      const { parent: p, name } = parent(path);
      return fs.rmdir(p, name);
    }, cb),
    rename: (src, dest, cb) => serve('rename', src, () => {
      const from = parent(src);
      const to = parent(dest);
      return fs.rename(from.parent, from.name, to.parent, to.name, 0);
    }, cb),
  };

  const fuse: FuseInstance = new Fuse(mountpoint, guarded(ops, opts.log), {
    timeout: false,
    allowOther: true,
    defaultPermissions: true,
    useIno: true,
    fsname: opts.fsname,
    subtype: 'vefs',
    // attr_timeout=0: libfuse 2.9 gives each name of a hard-linked file its
    // own kernel inode, so a cached size would hide a write made through
    // another name; the kernel asks again instead.
    options: ['hard_remove', 'big_writes', 'nonempty', 'max_read=131072', 'attr_timeout=0'],
  });
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) return reject(err);
      resolve({
        mountpoint,
        unmount: () => new Promise<void>((res, rej) => fuse.unmount((e) => (e ? rej(e) : res()))),
      });
    });
  });
}
