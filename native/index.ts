// Typed face of the vefs N-API addon (native/src/*.cc): the Linux calls that
// Node's fs lacks. Every call is synchronous unless it returns a Promise, and
// throws a NativeError (errno, code, syscall) on failure.
//
// Paths and names are byte strings: one character per byte (latin1), as the
// patched fuse-native hands them over, because a Linux name is any sequence
// of bytes and need not be valid UTF-8. A path that comes from a person (a
// command line, a config) goes through toBytes first.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A stat result with every field at full width: 64-bit inode/device and nanosecond times. */
export interface NativeStat {
  dev: bigint;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: number;
  blksize: number;
  blocks: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

/** What scanDir and statNames answer. */
export interface ScannedDir {
  names: string[];
  types: Uint8Array;
  stats: Float64Array;
  ids: BigUint64Array;
}

/** Numbers per entry in ScannedDir.stats. */
export const SCAN_FIELDS = 11;

/** Where each number of a prepareLinks row is (native/src/link.cc PrepField). */
export const enum PrepField {
  Err, Fd, Nlink, Mode, Uid, Gid, Size, MtimeSec, MtimeNsec, AtimeSec, AtimeNsec,
  Flags, LeaseErr, HasXattrs, Verdict, NowSize, NowMtimeSec, NowMtimeNsec,
}
export const PREP_FIELDS = 18;
/** A prepareLinks row's verdict (native/src/vefs.h CompareOutcome; -1: not compared). */
export const enum Verdict { NotCompared = -1, Same, Differs, Short, WriterWaiting }

/** A name's outcome in replaceNames (native/src/link.cc NameOutcome). */
export const enum ReplaceOutcome { Done, Changed, Full, OtherMount, WriterWaiting, NotReached }
export const REPLACE_TARGET_FIELDS = 5;
/** Per done name: its directory's mtime s, ns and ctime s, ns before, then after. */
export const REPLACE_STAMP_FIELDS = 8;

export interface NativeStatfs {
  type: number;
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
  flags: number;
  fsid: bigint;
}

export interface NativeDirent {
  name: string;
  ino: bigint;
  /** DT_* value from getdents64. */
  type: number;
}

export interface NativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

export interface NativeConstants {
  O_RDONLY: number; O_WRONLY: number; O_RDWR: number; O_CREAT: number; O_EXCL: number;
  O_TRUNC: number; O_APPEND: number; O_DIRECTORY: number; O_NOFOLLOW: number;
  O_NOATIME: number; O_PATH: number; O_CLOEXEC: number; O_NONBLOCK: number; O_TMPFILE: number;
  AT_FDCWD: number; AT_SYMLINK_NOFOLLOW: number; AT_REMOVEDIR: number; AT_EMPTY_PATH: number;
  RENAME_NOREPLACE: number; RENAME_EXCHANGE: number; RENAME_WHITEOUT: number;
  RESOLVE_BENEATH: number; RESOLVE_NO_SYMLINKS: number; RESOLVE_NO_MAGICLINKS: number;
  RESOLVE_NO_XDEV: number; RESOLVE_IN_ROOT: number;
  UTIME_NOW: number; UTIME_OMIT: number;
  XATTR_CREATE: number; XATTR_REPLACE: number;
  FS_IMMUTABLE_FL: number; FS_APPEND_FL: number; FS_NOATIME_FL: number;
  LOCK_SH: number; LOCK_EX: number; LOCK_NB: number; LOCK_UN: number;
  F_RDLCK: number; F_WRLCK: number; F_UNLCK: number;
  SEEK_SET: number; SEEK_CUR: number; SEEK_END: number; SEEK_DATA: number; SEEK_HOLE: number;
  FALLOC_FL_KEEP_SIZE: number; FALLOC_FL_PUNCH_HOLE: number; FALLOC_FL_ZERO_RANGE: number;
  MNT_DETACH: number; MNT_FORCE: number; MS_NOSUID: number; MS_NODEV: number; MS_NOATIME: number;
  S_IFMT: number; S_IFREG: number; S_IFDIR: number; S_IFLNK: number; S_IFCHR: number;
  S_IFBLK: number; S_IFIFO: number; S_IFSOCK: number;
  DT_UNKNOWN: number; DT_FIFO: number; DT_CHR: number; DT_DIR: number; DT_BLK: number;
  DT_REG: number; DT_LNK: number; DT_SOCK: number;
}

export interface NativeAddon {
  constants: NativeConstants;

  /** Always adds O_CLOEXEC, as libuv does. */
  openat(dirfd: number, path: string, flags: number, mode: number): number;
  /**
   * openat2(2) with struct open_how { flags, mode, resolve }. Adds O_CLOEXEC;
   * mode is ignored without O_CREAT/O_TMPFILE, as in openat (the raw call would fail with EINVAL).
   */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number;
  close(fd: number): void;
  fstatat(dirfd: number, path: string, flags: number): NativeStat;
  fstat(fd: number): NativeStat;
  fstatfs(fd: number): NativeStatfs;
  mkdirat(dirfd: number, path: string, mode: number): void;
  mknodat(dirfd: number, path: string, mode: number, rdev: bigint): void;
  symlinkat(target: string, dirfd: number, path: string): void;
  readlinkat(dirfd: number, path: string): string;
  linkat(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number): void;
  unlinkat(dirfd: number, path: string, flags: number): void;
  renameat2(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number): void;
  /** fchmodat2(2): honours AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH (kernel 6.6+). */
  fchmodat(dirfd: number, path: string, mode: number, flags: number): void;
  fchownat(dirfd: number, path: string, uid: number, gid: number, flags: number): void;
  /** nsec may be UTIME_NOW or UTIME_OMIT. Works on symlinks with AT_SYMLINK_NOFOLLOW and on O_PATH fds with AT_EMPTY_PATH. */
  utimensat(dirfd: number, path: string, atimeSec: number, atimeNsec: number,
    mtimeSec: number, mtimeNsec: number, flags: number): void;
  /** Every entry but "." and ".."; reads the whole directory with getdents64. */
  getdents(fd: number): NativeDirent[];
  /**
   * Every entry but "." and ".." with, for regular files (unless statFiles
   * is false) and entries of unknown type, their statx (not following
   * symlinks), packed: entry i has types[i] (DT_*; 0xff if it vanished
   * before its statx), stats[SCAN_FIELDS*i ...] (mode, nlink, uid, gid, size,
   * mtime s, mtime ns, ctime s, ctime ns, immutable 0/1, for a regular file
   * any xattrs 0/1) and ids[2i],
   * ids[2i+1] (dev, ino). Entries without a statx have zeros there.
   */
  scanDir(fd: number, statFiles?: boolean): ScannedDir;
  /**
   * The statx of these names in the directory fd, packed as scanDir packs
   * them (a name may be a relative path; one that is gone gets type 0xff).
   */
  statNames(fd: number, names: string[]): ScannedDir;

  /** The l* calls take a path and never follow a final symlink; returns null for ENODATA. */
  lgetxattr(path: string, name: string): Buffer | null;
  lsetxattr(path: string, name: string, value: Buffer, flags: number): void;
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  fgetxattr(fd: number, name: string): Buffer | null;
  fsetxattr(fd: number, name: string, value: Buffer, flags: number): void;
  flistxattr(fd: number): string[];
  fremovexattr(fd: number, name: string): void;

  /** FS_IOC_GETFLAGS / FS_IOC_SETFLAGS. */
  getflags(fd: number): number;
  setflags(fd: number, flags: number): void;
  /**
   * Per fd: nlink, ctime s and ns, inode flags (-1: none on this filesystem)
   * in facts; dev and ino in ids; with handles, its file handle as
   * nameToHandleAt's Buffer in hex (null where the filesystem has none).
   */
  inodeStates(fds: Int32Array, handles: boolean): { facts: Float64Array; ids: BigUint64Array; handles: (string | null)[] | null };
  /** setflags on each fd whose value is not negative; every one is tried, the first failure returned. */
  setflagsEach(fds: Int32Array, flags: Float64Array): NativeError | null;

  /** flock(2) on a worker thread: waiting for another holder never blocks the event loop. */
  flock(fd: number, op: number): Promise<void>;
  /** flock(2) for ops that cannot wait: op must include LOCK_NB, or be LOCK_UN. */
  flockSync(fd: number, op: number): void;
  /**
   * fcntl(F_SETLEASE). A read lease fails with EAGAIN while any other
   * descriptor has the file open for writing; while it is held, another
   * process's open for writing (or truncate) waits until it is released, and
   * this process receives SIGIO (default action: terminate; install a handler).
   */
  setlease(fd: number, type: number): void;
  /** fcntl(F_GETLEASE): the lease held, or while it is being broken the type it is broken to. */
  getlease(fd: number): number;
  /** name_to_handle_at(2): handle is the kernel's struct file_handle as one opaque Buffer. */
  nameToHandleAt(dirfd: number, path: string, flags: number): { handle: Buffer; mountId: number };
  /** open_by_handle_at(2) (CAP_DAC_READ_SEARCH): mountFd is any descriptor on the handle's filesystem. */
  openByHandleAt(mountFd: number, handle: Buffer, flags: number): number;

  ftruncate(fd: number, length: number): void;
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  lseek(fd: number, offset: number, whence: number): number;
  ficlone(destFd: number, srcFd: number): void;
  copyFileRange(srcFd: number, srcOffset: number, destFd: number, destOffset: number, length: number): number;
  /**
   * Copies all of srcFd's content into destFd (empty, writable) on a worker
   * thread: FICLONE when the filesystem can, else copy_file_range over the
   * data segments only (SEEK_DATA/SEEK_HOLE), then ftruncate to the source's
   * size, so holes stay holes.
   */
  copyData(srcFd: number, destFd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  /** Everything written to the filesystem of fd reaches the disk (blocks the caller). */
  syncfs(fd: number): void;
  /**
   * Steps 1 to 3 of a unify link (src/unify/link.ts) on a worker thread, for
   * several groups: group k is (master, count, size) in groups[3k..], its
   * items the next `count` paths, each opened beneath roots[i] as hashFiles
   * opens it. Each item's row in facts (PREP_FIELDS numbers, PrepField)
   * tells what happened: err (errno of a name that moved away, -1 not
   * tried), fd (the caller's to close whenever err is 0), stat, inode flags
   * (-1: none on this filesystem), whether it has xattrs, the errno of
   * F_SETLEASE (with lease; EAGAIN: open for writing), and for targets of
   * the group's size the comparison with the master's first `size` bytes
   * (verdict: 0 equal, 1 different, 2 a file ended early, 3 a lease is being
   * broken: a writer waits; -1 not compared) and the size and mtime after
   * it. ids holds dev and ino per row. With master -1 the group's first item
   * is its master, opened here; if it does not open or is not leased, none
   * of its targets is tried.
   */
  prepareLinks(groups: Float64Array, roots: Int32Array, paths: string[], lease: boolean):
    Promise<{ facts: Float64Array; ids: BigUint64Array; bytesRead: number }>;
  /**
   * Step 4 of a unify link inside a mutable section, on this thread. Per
   * target, REPLACE_TARGET_FIELDS numbers (master fd, target fd, leased,
   * flags to seal it with or -1, its number of names) and its dev and ino in
   * ids; its names follow each other in dirs and names. A leased target
   * whose lease or master's lease is being broken is left (writer waiting);
   * otherwise each name that still shows the target is replaced by a link to
   * the master (named tmpPrefix + (tmpStart + name index), then renamed over
   * it) and its directory's times put back; a target left without a name
   * gets FS_IMMUTABLE_FL (gone). Outcome per name: ReplaceOutcome. EMLINK
   * stops the call (outcome full). stamps holds REPLACE_STAMP_FIELDS numbers
   * per done name (its directory's mtime and ctime before and after) and
   * dirInos the directory's inode. error: what stopped the call early, after
   * the outcomes before it took effect.
   */
  replaceNames(targets: Float64Array, ids: BigUint64Array, dirs: Int32Array, names: string[], tmpPrefix: string, tmpStart: number):
    { outcomes: Int32Array; stamps: Float64Array; dirInos: BigUint64Array; gone: Uint8Array; error: NativeError | null };
  /**
   * Hands the descriptors to the process's closing threads (not the libuv
   * pool) and returns: a replaced inode's last close frees its blocks, which
   * may wait for the device. Close errors are ignored (for descriptors that
   * were only read).
   */
  closeInBackground(fds: Int32Array): void;
  /** Descriptors handed over and not closed yet. */
  closeBacklog(): number;
  /** Resolves once at most `limit` descriptors handed over are not closed yet. */
  closeDrained(limit: number): Promise<void>;
  /**
   * XXH128 (xxhash-addon's digest) of each file, opened beneath roots[i] at
   * paths[i] (byte strings, relative) as openat2 with RESOLVE_BENEATH,
   * NO_SYMLINKS and NO_XDEV, on a worker thread; null for a file that is gone
   * or is not the version given by ids (dev, ino) and versions (size, mtime
   * s, ns) before and after the read.
   */
  hashFiles(roots: Int32Array, paths: string[], ids: BigUint64Array, versions: Float64Array): Promise<{ hashes: (Buffer | null)[]; bytesRead: number }>;

  umount2(target: string, flags: number): void;
  /** umount2 on the thread pool: for the process that serves the mount. */
  umountAsync(target: string, flags: number): Promise<void>;
  /**
   * A descriptor of a detached, read-only, noatime clone of the mounts at
   * path (open_tree + mount_setattr): reads through it never write the tree,
   * not even an atime. Usable as a dirfd and as /proc/self/fd/N paths.
   */
  openTreeReadonly(path: string): number;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;

  /**
   * Starts the one reader thread of the process for FUSE devices. deliver
   * gets every request read since its last call: fds[i] is the device that
   * requests[i] came from; null means that device ended (unmounted, aborted).
   */
  fuseStart(deliver: (fds: number[], requests: (Buffer | null)[]) => void): void;
  /** open("/dev/fuse", O_RDWR | O_CLOEXEC). */
  fuseOpenDevice(): number;
  /** Makes the device non-blocking and has the reader serve it. */
  fuseAdd(fd: number): void;
  fuseRemove(fd: number): void;
  /** writev of the parts as one reply; returns 0 or the errno (ENOENT: the request was interrupted). */
  fuseReply(fd: number, parts: Buffer[]): number;
  /** Writes a notification on a worker thread. */
  fuseNotify(fd: number, message: Buffer): Promise<void>;
  /** FUSE_DEV_IOC_BACKING_OPEN: a backing id for a passthrough open. */
  fuseBackingOpen(devFd: number, fd: number): number;
  fuseBackingClose(devFd: number, id: number): void;
  /** pidfd_getfd(2): this process's own copy of descriptor fd of process pid. */
  pidfdGetfd(pid: number, fd: number): number;
}

/** A UTF-8 path from a person or from Node's fs, as the byte string the addon takes. */
export function toBytes(path: string): string {
  return Buffer.from(path, 'utf8').toString('latin1');
}

export const native: NativeAddon = require('../../native/build/Release/vefs_native.node');
export const C = native.constants;

/** The VE launcher (native/src/ve-launch.c), a static executable built beside the addon. */
export const VE_LAUNCH: string = new URL('../../native/build/Release/ve-launch', import.meta.url).pathname;
