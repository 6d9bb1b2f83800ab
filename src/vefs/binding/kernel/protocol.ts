// The FUSE kernel protocol (include/uapi/linux/fuse.h of kernel 6.18,
// protocol 7.4x): the opcodes, flags and structures VEFS uses, decoded from
// and encoded into the device's little-endian messages. Only layout lives
// here; what a request means is the session's business.
import type { Attr } from '../../types.js';

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, ACCESS: 34, CREATE: 35,
  INTERRUPT: 36, DESTROY: 38, IOCTL: 39, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44,
  RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47, STATX: 52,
} as const;

export const Init = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  POSIX_ACL: 1 << 20,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
  /** In flags2: bit 37 of the 64-bit flags. */
  PASSTHROUGH2: 1 << (37 - 32),
} as const;

export const Fopen = { DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, CACHE_DIR: 1 << 3, PASSTHROUGH: 1 << 7 } as const;

export const Fattr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8,
} as const;

export const GETATTR_FH = 1;
export const FSYNC_FDATASYNC = 1;
export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3, RESEND: 7 } as const;

export const ROOT_ID = 1n;
export const IN_HEADER = 40;
export const OUT_HEADER = 16;
const ATTR = 88;
export const ENTRY_OUT = 40 + ATTR;

/** One request read from the device: its header and a cursor over its body. */
export class Request {
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeid: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Sent again after a server takeover (FUSE_NOTIFY_RESEND): the crashed server may have done it already. */
  readonly resent: boolean;
  private pos = IN_HEADER;

  constructor(readonly buf: Buffer) {
    this.opcode = buf.readUInt32LE(4);
    this.unique = buf.readBigUInt64LE(8);
    this.nodeid = buf.readBigUInt64LE(16);
    this.uid = buf.readUInt32LE(24);
    this.gid = buf.readUInt32LE(28);
    this.pid = buf.readUInt32LE(32);
    this.resent = (this.unique & (1n << 63n)) !== 0n;
  }

  u32(): number {
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  /** A signed 64-bit value (a time in seconds before 1970 is negative). */
  i64(): number {
    const v = this.buf.readBigInt64LE(this.pos);
    this.pos += 8;
    return Number(v);
  }
  /** A 64-bit offset or size as a number: file offsets stay below 2^53. */
  n64(): number {
    return Number(this.u64());
  }
  skip(bytes: number): this {
    this.pos += bytes;
    return this;
  }
  /** A NUL-terminated name, as the byte string the rules take. */
  name(): string {
    const end = this.buf.indexOf(0, this.pos);
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  rest(): Buffer {
    return this.buf.subarray(this.pos);
  }
}

/** Writer for a reply or notification body of known size. */
export class Out {
  readonly buf: Buffer;
  private pos = 0;
  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }
  u16(v: number): this { this.buf.writeUInt16LE(v, this.pos); this.pos += 2; return this; }
  u32(v: number): this { this.buf.writeUInt32LE(v >>> 0, this.pos); this.pos += 4; return this; }
  i32(v: number): this { this.buf.writeInt32LE(v, this.pos); this.pos += 4; return this; }
  u64(v: bigint | number): this { this.buf.writeBigUInt64LE(BigInt(v), this.pos); this.pos += 8; return this; }
  i64(v: bigint | number): this { this.buf.writeBigInt64LE(BigInt(v), this.pos); this.pos += 8; return this; }
  bytes(b: Buffer): this { b.copy(this.buf, this.pos); this.pos += b.length; return this; }
  skip(n: number): this { this.pos += n; return this; }
  get offset(): number { return this.pos; }
}

export function outHeader(unique: bigint, error: number, bodyLength: number): Buffer {
  return new Out(OUT_HEADER).u32(OUT_HEADER + bodyLength).i32(error).u64(unique).buf;
}

const NS = 1_000_000_000n;

/** Seconds (signed, rounded down) and the nanoseconds after them, as timespec has them. */
function split(ns: bigint): [bigint, number] {
  let sec = ns / NS;
  let rest = ns % NS;
  if (rest < 0n) {
    sec -= 1n;
    rest += NS;
  }
  return [sec, Number(rest)];
}

/** struct fuse_attr. */
export function attr(o: Out, a: Attr): void {
  o.u64(a.ino).u64(a.size).u64(a.blocks);
  const times = [split(a.atimeNs), split(a.mtimeNs), split(a.ctimeNs)];
  for (const [sec] of times) o.i64(sec);
  for (const [, nsec] of times) o.u32(nsec);
  o.u32(a.mode).u32(a.nlink).u32(a.uid).u32(a.gid).u32(encodeDev(a.rdev)).u32(a.blksize).u32(0);
}

/** The kernel's new_encode_dev: 12 bits of major, 20 of minor, in 32 bits. */
function encodeDev(dev: bigint): number {
  const major = Number((dev >> 8n) & 0xfffn);
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xfff00n));
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(v: number): bigint {
  const major = (v & 0xfff00) >>> 8;
  const minor = (v & 0xff) | ((v >>> 12) & 0xfff00);
  return (BigInt(major) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n);
}

export interface Validity {
  entrySec: number;
  attrSec: number;
}

/** struct fuse_entry_out; nodeid 0 caches a negative entry. */
export function entryOut(o: Out, nodeid: bigint, generation: bigint, v: Validity, a: Attr | null): void {
  o.u64(nodeid).u64(generation).u64(v.entrySec).u64(a ? v.attrSec : 0).u32(0).u32(0);
  if (a) attr(o, a);
  else o.skip(ATTR);
}

export function attrOut(a: Attr, v: Validity): Buffer {
  const o = new Out(16 + ATTR).u64(v.attrSec).u32(0).u32(0);
  attr(o, a);
  return o.buf;
}

const STATX_BASIC_STATS = 0x7ff;

/** struct fuse_statx_out: the basic fields, which are all VEFS keeps per object. */
export function statxOut(a: Attr, v: Validity): Buffer {
  const o = new Out(32 + 256).u64(v.attrSec).u32(0).u32(0).skip(16);
  o.u32(STATX_BASIC_STATS).u32(a.blksize).u64(0).u32(a.nlink).u32(a.uid).u32(a.gid).u16(a.mode).skip(2);
  o.u64(a.ino).u64(a.size).u64(a.blocks).u64(0);
  const ts = (ns: bigint) => {
    const [sec, nsec] = split(ns);
    o.i64(sec).u32(nsec).skip(4);
  };
  ts(a.atimeNs);
  o.skip(16); // btime: not in the mask
  ts(a.ctimeNs);
  ts(a.mtimeNs);
  o.u32(Number((a.rdev >> 8n) & 0xfffn)).u32(Number((a.rdev & 0xffn) | ((a.rdev >> 12n) & 0xfff00n)));
  return o.buf;
}

export function openOut(fh: bigint, flags: number, backingId: number): Buffer {
  return new Out(16).u64(fh).u32(flags).i32(backingId).buf;
}

export function u32Out(v: number): Buffer {
  return new Out(8).u32(v).buf;
}

export function u64Out(v: number | bigint): Buffer {
  return new Out(8).u64(v).buf;
}

/** Bytes a dirent with this name takes: header, name, padding to 8. */
export function direntSize(name: string, plus: boolean): number {
  return (((plus ? ENTRY_OUT : 0) + 24 + Buffer.byteLength(name, 'latin1') + 7) & ~7);
}

/** struct fuse_dirent at o's position; `off` is the cookie of the entry after it. */
export function dirent(o: Out, ino: bigint, off: number, type: number, name: string): void {
  const start = o.offset;
  const bytes = Buffer.from(name, 'latin1');
  o.u64(ino).u64(off).u32(bytes.length).u32(type >> 12).bytes(bytes);
  o.skip(((o.offset - start + 7) & ~7) - (o.offset - start));
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

export function initIn(r: Request): InitIn {
  const major = r.u32();
  const minor = r.u32();
  const maxReadahead = r.u32();
  const flags = r.u32();
  const flags2 = (flags & Init.INIT_EXT) !== 0 ? r.u32() : 0;
  return { major, minor, maxReadahead, flags, flags2 };
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  maxPages: number;
  maxStackDepth: number;
}

export function initOut(i: InitOut): Buffer {
  return new Out(64).u32(7).u32(i.minor).u32(i.maxReadahead).u32(i.flags)
    .u16(i.maxBackground).u16(i.congestionThreshold).u32(i.maxWrite).u32(1)
    .u16(i.maxPages).u16(0).u32(i.flags2).u32(i.maxStackDepth).buf;
}

export function invalInode(nodeid: bigint): Buffer {
  return new Out(24).u64(nodeid).i64(0).i64(-1).buf;
}

export function invalEntry(parent: bigint, name: string): Buffer {
  const bytes = Buffer.from(name, 'latin1');
  const o = new Out(16 + bytes.length + 1).u64(parent).u32(bytes.length).u32(0).bytes(bytes);
  return o.buf;
}
