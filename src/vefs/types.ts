// The node API's data: what a binding hands in and gets back.

/** Attributes as a VE sees them: the VEFS inode number, nanosecond times. */
export interface Attr {
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: number;
  blksize: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** Who asks: new objects belong to the caller, as on any local filesystem. */
export interface Caller {
  uid: number;
  gid: number;
}

export const ROOT_CALLER: Caller = { uid: 0, gid: 0 };

/** A time for utimens; nsec may be UTIME_NOW or UTIME_OMIT. */
export interface Timespec {
  sec: number;
  nsec: number;
}

export interface DirEntry {
  name: string;
  ino: bigint;
  /** S_IFMT bits of the entry's type. */
  type: number;
}

export interface Statfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** What a mount is made of; checked by config.ts before anything is touched. */
export interface MountConfig {
  /** Topmost first, like overlayfs's lowerdir. */
  templates: string[];
  privateDir: string;
  workDir: string;
  mountpoint: string;
  binding: BindingName;
}

/** kernel: VEFS speaks the FUSE protocol itself (binding/kernel.ts); fuse-native: libfuse 2.9 (binding/fuse-native.ts). */
export type BindingName = 'kernel' | 'fuse-native';
