// Open files. A handle is a real file descriptor on the visible object: a
// read-only open of a template file reads the template (O_NOATIME); an open
// that may write copies the node up first and opens the private copy. Data
// goes through the descriptor with asynchronous I/O, so a slow disk never
// holds up other requests or other mounts. A handle keeps its object: a file
// opened before a copy-up, rename or unlink still reads what it opened, as on
// any local filesystem.
import { read as fsRead, write as fsWrite, close as fsClose, fdatasync, constants as fsConstants } from 'node:fs';
import { promisify } from 'node:util';
import { native, C } from '../../native/index.js';
import { getattr, toAttr } from './attrs.js';
import { copyUp } from './copyup.js';
import { fsError } from './errors.js';
import type { Node } from './node.js';
import type { Attr } from './types.js';
import type { Union } from './union.js';

const readAsync = promisify(fsRead);
const writeAsync = promisify(fsWrite);
const closeAsync = promisify(fsClose);
const fdatasyncAsync = promisify(fdatasync);

/**
 * The open flags a layer file takes from the VE's open. The kernel also sends
 * its own bits (such as __FMODE_EXEC for execve), which openat2 rejects, and
 * O_CREAT/O_EXCL were already handled by lookup and create.
 */
const PASSED = C.O_WRONLY | C.O_RDWR | C.O_APPEND | C.O_TRUNC | C.O_NONBLOCK | fsConstants.O_SYNC
  | fsConstants.O_DSYNC | fsConstants.O_DIRECT | C.O_DIRECTORY;

export class Handle {
  /** The descriptor reads a metacopy file's template data; its attributes are the node's. */
  readonly dataOnly: boolean;
  constructor(readonly fd: number, readonly node: Node) {
    this.dataOnly = node.metacopy;
  }
}

export function wantsWrite(flags: number): boolean {
  return (flags & (C.O_WRONLY | C.O_RDWR)) !== 0 || (flags & C.O_TRUNC) !== 0;
}

export async function open(u: Union, node: Node, flags: number): Promise<Handle> {
  if (node.type === C.S_IFLNK) throw fsError('ELOOP');
  if (wantsWrite(flags)) {
    if (node.type === C.S_IFDIR) throw fsError('EISDIR');
    await copyUp(u, node, (flags & C.O_TRUNC) !== 0 ? 'empty' : 'data');
  }
  const { layer, rel } = u.dataLayer(node);
  return new Handle(layer.open(rel, flags & PASSED), node);
}

export async function read(h: Handle, buf: Buffer, length: number, position: number): Promise<number> {
  const { bytesRead } = await readAsync(h.fd, buf, 0, length, position);
  return bytesRead;
}

export async function write(h: Handle, buf: Buffer, length: number, position: number): Promise<number> {
  const { bytesWritten } = await writeAsync(h.fd, buf, 0, length, position);
  return bytesWritten;
}

export async function fsync(h: Handle, datasync: boolean): Promise<void> {
  if (datasync) await fdatasyncAsync(h.fd);
  else await native.fsync(h.fd);
}

export function fgetattr(u: Union, h: Handle): Attr {
  return h.dataOnly ? getattr(u, h.node) : toAttr(h.node, native.fstat(h.fd));
}

export function ftruncate(h: Handle, size: number): void {
  native.ftruncate(h.fd, size);
}

export function fallocate(h: Handle, mode: number, offset: number, length: number): void {
  native.fallocate(h.fd, mode, offset, length);
}

/** SEEK_DATA and SEEK_HOLE answer from the layer file, so holes show as they are. */
export function lseek(h: Handle, offset: number, whence: number): number {
  return native.lseek(h.fd, offset, whence);
}

/** At most COPY_CHUNK bytes per call: a short copy is allowed, and a long one would hold the event loop. */
const COPY_CHUNK = 16 << 20;

export function copyFileRange(from: Handle, fromOffset: number, to: Handle, toOffset: number, length: number): number {
  if (to.dataOnly) throw fsError('EBADF');
  return native.copyFileRange(from.fd, fromOffset, to.fd, toOffset, Math.min(length, COPY_CHUNK));
}

export async function release(h: Handle): Promise<void> {
  await closeAsync(h.fd);
}
