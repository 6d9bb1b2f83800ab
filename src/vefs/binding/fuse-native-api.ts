// Types for fuse-native 2.2.6 as patched by native/patches/fuse-native+2.2.6.patch.
// They describe the patched API only: handler signatures for utimens, create
// and fgetattr differ from the upstream README.
import { createRequire } from 'node:module'

/** 0 for success or a negative errno (Fuse.ENOENT, ...). */
export type FuseErr = number

/** 64-bit quantities: a number is exact up to 2^53, pass a bigint beyond. */
export type FuseInt64 = number | bigint

/** Completion for handlers that only report success or failure. */
export type FuseDoneCallback = (err: FuseErr) => void

/**
 * What getattr/fgetattr/readdir hand back. Both fs.Stats and fs.BigIntStats
 * fit. Times: `atimeNs`/`mtimeNs`/`ctimeNs` (bigint nanoseconds since the
 * epoch, may be negative) win when present; otherwise `atime`/`mtime`/`ctime`
 * as a Date or a number of milliseconds (millisecond precision only); absent
 * means "now".
 */
export interface FuseStat {
  mode?: number | bigint
  uid?: number | bigint
  gid?: number | bigint
  size?: FuseInt64
  dev?: FuseInt64
  /** Defaults to 1. */
  nlink?: FuseInt64
  /** Reaches the kernel only with the `useIno` option. */
  ino?: FuseInt64
  rdev?: FuseInt64
  blksize?: number | bigint
  blocks?: FuseInt64
  atime?: Date | number
  mtime?: Date | number
  ctime?: Date | number
  atimeNs?: bigint
  mtimeNs?: bigint
  ctimeNs?: bigint
}

/** statfs fields travel as uint32. */
export interface FuseStatfs {
  bsize?: number
  frsize?: number
  blocks?: number
  bfree?: number
  bavail?: number
  files?: number
  ffree?: number
  favail?: number
  fsid?: number
  flag?: number
  namemax?: number
}

/**
 * One time handed to utimens. `nsec` may be Fuse.UTIME_NOW (set to the
 * current time) or Fuse.UTIME_OMIT (leave unchanged); `sec` is then 0 and
 * meaningless.
 */
export interface FuseTimespec {
  sec: number
  nsec: number
}

/**
 * Handlers. `path` is typed `string | null` where libfuse passes NULL for a
 * file that was unlinked while still open (needs the `hard_remove` option;
 * identify the file by `fd` then). `fd` is whatever open/create returned
 * (uint32). Read/write callbacks take the byte count or a negative errno.
 */
export interface FuseOperations {
  init?(cb: FuseDoneCallback): void
  error?(cb: FuseDoneCallback): void
  access?(path: string, mode: number, cb: FuseDoneCallback): void
  statfs?(path: string, cb: (err: FuseErr, statfs?: FuseStatfs) => void): void
  getattr?(path: string, cb: (err: FuseErr, stat?: FuseStat) => void): void
  fgetattr?(path: string | null, fd: number, cb: (err: FuseErr, stat?: FuseStat) => void): void
  flush?(path: string | null, fd: number, cb: FuseDoneCallback): void
  fsync?(path: string | null, datasync: number, fd: number, cb: FuseDoneCallback): void
  fsyncdir?(path: string | null, datasync: number, fd: number, cb: FuseDoneCallback): void
  /** Give `stats` the same length as `names` for it to be used (d_ino with useIno, d_type). */
  readdir?(path: string, cb: (err: FuseErr, names?: string[], stats?: FuseStat[]) => void): void
  truncate?(path: string, size: number, cb: FuseDoneCallback): void
  ftruncate?(path: string | null, fd: number, size: number, cb: FuseDoneCallback): void
  utimens?(path: string, atime: FuseTimespec, mtime: FuseTimespec, cb: FuseDoneCallback): void
  readlink?(path: string, cb: (err: FuseErr, linkname?: string) => void): void
  chown?(path: string, uid: number, gid: number, cb: FuseDoneCallback): void
  chmod?(path: string, mode: number, cb: FuseDoneCallback): void
  mknod?(path: string, mode: number, dev: number, cb: FuseDoneCallback): void
  setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: FuseDoneCallback): void
  /** Give no value (and err 0) for ENODATA. */
  getxattr?(path: string, name: string, position: number, cb: (err: FuseErr, value?: Buffer) => void): void
  listxattr?(path: string, cb: (err: FuseErr, list?: string[]) => void): void
  removexattr?(path: string, name: string, cb: FuseDoneCallback): void
  open?(path: string, flags: number, cb: (err: FuseErr, fd?: number) => void): void
  opendir?(path: string, flags: number, cb: (err: FuseErr, fd?: number) => void): void
  read?(path: string | null, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrErr: number) => void): void
  write?(path: string | null, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrErr: number) => void): void
  release?(path: string | null, fd: number, cb: FuseDoneCallback): void
  releasedir?(path: string, fd: number, cb: FuseDoneCallback): void
  /** `flags` are the open(2) flags (O_EXCL, O_APPEND, O_ACCMODE bits, ...). */
  create?(path: string, mode: number, flags: number, cb: (err: FuseErr, fd?: number) => void): void
  unlink?(path: string, cb: FuseDoneCallback): void
  rename?(src: string, dest: string, cb: FuseDoneCallback): void
  link?(src: string, dest: string, cb: FuseDoneCallback): void
  symlink?(src: string, dest: string, cb: FuseDoneCallback): void
  mkdir?(path: string, mode: number, cb: FuseDoneCallback): void
  rmdir?(path: string, cb: FuseDoneCallback): void
}

export type FuseOperationName = keyof FuseOperations

/**
 * Milliseconds after which a handler that has not called back answers
 * ETIMEDOUT (default 15000). `false` disables it, globally or per operation.
 */
export type FuseTimeout =
  | number
  | false
  | ({ default?: number | false } & { [op in FuseOperationName]?: number | false })

export interface FuseOptions {
  timeout?: FuseTimeout
  /** Lazily unmount a stale mount at the mountpoint first. */
  force?: boolean
  /** Create the mountpoint if missing. */
  mkdir?: boolean
  debug?: boolean
  allowOther?: boolean
  allowRoot?: boolean
  autoUnmount?: boolean
  defaultPermissions?: boolean
  blkdev?: boolean
  blksize?: number
  maxRead?: number
  fd?: number
  userId?: number
  fsname?: string
  subtype?: string
  kernelCache?: boolean
  autoCache?: boolean
  umask?: number | string
  uid?: number
  gid?: number
  entryTimeout?: number
  attrTimeout?: number
  acAttrTimeout?: number
  noforget?: boolean
  remember?: number
  modules?: string
  displayFolder?: boolean
  name?: string
  /** libfuse `use_ino`: st_ino from getattr/readdir reaches the kernel. */
  useIno?: boolean
  /**
   * Appended verbatim to the -o list after the named options, e.g.
   * `['hard_remove', 'big_writes', 'attr_timeout=1', 'max_read=131072']`.
   * An option libfuse does not know makes mount() fail.
   */
  options?: string[]
}

export interface FuseInstance {
  readonly mnt: string
  readonly ops: FuseOperations
  readonly opts: FuseOptions
  readonly opened: boolean
  readonly closed: boolean
  /** Calls back once the kernel has sent FUSE_INIT. */
  mount(cb: (err: Error | null) => void): void
  /** Lazy unmount (umount -l as root, fusermount3 -uz otherwise); never blocks the event loop. */
  unmount(cb: (err: (Error & { unmountFailure?: boolean }) | null) => void): void
  errno(code: string): number
}

export type FuseErrnoName =
  | 'EPERM' | 'ENOENT' | 'ESRCH' | 'EINTR' | 'EIO' | 'ENXIO' | 'E2BIG' | 'ENOEXEC' | 'EBADF'
  | 'ECHILD' | 'EAGAIN' | 'ENOMEM' | 'EACCES' | 'EFAULT' | 'ENOTBLK' | 'EBUSY' | 'EEXIST'
  | 'EXDEV' | 'ENODEV' | 'ENOTDIR' | 'EISDIR' | 'EINVAL' | 'ENFILE' | 'EMFILE' | 'ENOTTY'
  | 'ETXTBSY' | 'EFBIG' | 'ENOSPC' | 'ESPIPE' | 'EROFS' | 'EMLINK' | 'EPIPE' | 'EDOM' | 'ERANGE'
  | 'EDEADLK' | 'ENAMETOOLONG' | 'ENOLCK' | 'ENOSYS' | 'ENOTEMPTY' | 'ELOOP' | 'EWOULDBLOCK'
  | 'ENOMSG' | 'EIDRM' | 'ECHRNG' | 'EL2NSYNC' | 'EL3HLT' | 'EL3RST' | 'ELNRNG' | 'EUNATCH'
  | 'ENOCSI' | 'EL2HLT' | 'EBADE' | 'EBADR' | 'EXFULL' | 'ENOANO' | 'EBADRQC' | 'EBADSLT'
  | 'EDEADLOCK' | 'EBFONT' | 'ENOSTR' | 'ENODATA' | 'ETIME' | 'ENOSR' | 'ENONET' | 'ENOPKG'
  | 'EREMOTE' | 'ENOLINK' | 'EADV' | 'ESRMNT' | 'ECOMM' | 'EPROTO' | 'EMULTIHOP' | 'EDOTDOT'
  | 'EBADMSG' | 'EOVERFLOW' | 'ENOTUNIQ' | 'EBADFD' | 'EREMCHG' | 'ELIBACC' | 'ELIBBAD'
  | 'ELIBSCN' | 'ELIBMAX' | 'ELIBEXEC' | 'EILSEQ' | 'ERESTART' | 'ESTRPIPE' | 'EUSERS'
  | 'ENOTSOCK' | 'EDESTADDRREQ' | 'EMSGSIZE' | 'EPROTOTYPE' | 'ENOPROTOOPT' | 'EPROTONOSUPPORT'
  | 'ESOCKTNOSUPPORT' | 'EOPNOTSUPP' | 'EPFNOSUPPORT' | 'EAFNOSUPPORT' | 'EADDRINUSE'
  | 'EADDRNOTAVAIL' | 'ENETDOWN' | 'ENETUNREACH' | 'ENETRESET' | 'ECONNABORTED' | 'ECONNRESET'
  | 'ENOBUFS' | 'EISCONN' | 'ENOTCONN' | 'ESHUTDOWN' | 'ETOOMANYREFS' | 'ETIMEDOUT'
  | 'ECONNREFUSED' | 'EHOSTDOWN' | 'EHOSTUNREACH' | 'EALREADY' | 'EINPROGRESS' | 'ESTALE'
  | 'EUCLEAN' | 'ENOTNAM' | 'ENAVAIL' | 'EISNAM' | 'EREMOTEIO' | 'EDQUOT' | 'ENOMEDIUM'
  | 'EMEDIUMTYPE'

/** Negative errno values (Linux numbering), e.g. Fuse.ENOENT === -2. */
export type FuseErrnoConstants = { readonly [name in FuseErrnoName]: number }

export interface FuseConstructor extends FuseErrnoConstants {
  new (mnt: string, ops: FuseOperations, opts?: FuseOptions): FuseInstance
  /** Lazy unmount of any FUSE mount at `mnt`, asynchronously. */
  unmount(mnt: string, cb: (err: Error | null) => void): void
  /** uid, gid and pid of the request whose handler runs now: call it synchronously at the handler's start. */
  context(): { uid: number; gid: number; pid: number }
  /** tv_nsec value in utimens meaning "set to the current time". */
  readonly UTIME_NOW: number
  /** tv_nsec value in utimens meaning "leave this time unchanged". */
  readonly UTIME_OMIT: number
  beforeMount(cb?: (err: Error | null) => void): void
  beforeUnmount(cb?: (err: Error | null) => void): void
  configure(cb?: (err: Error | null) => void): void
  unconfigure(cb?: (err: Error | null) => void): void
  isConfigured(cb: (err: Error | null, configured?: boolean) => void): void
}

export const Fuse: FuseConstructor = createRequire(import.meta.url)('fuse-native')
