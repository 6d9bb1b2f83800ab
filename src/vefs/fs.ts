// VefsFs: the node API that every binding drives. A binding decodes a
// request, finds the nodes (by path for fuse-native, by node ID for a kernel
// protocol binding), calls one method and encodes the reply or the errno.
// Tests drive the same methods without any mount.
import * as attrs from './attrs.js';
import * as files from './files.js';
import * as ns from './namespace.js';
import { readdir } from './readdir.js';
import { Union } from './union.js';
import type { Handle } from './files.js';
import type { Node } from './node.js';
import type { Attr, Caller, DirEntry, MountConfig, Statfs, Timespec } from './types.js';

export class VefsFs {
  readonly union: Union;

  constructor(readonly config: MountConfig) {
    this.union = new Union(config);
  }

  close(): void {
    this.union.close();
  }

  get root(): Node { return this.union.root; }
  lookup(parent: Node, name: string): Node { return this.union.lookup(parent, name); }
  resolve(path: string): Node { return this.union.resolve(path); }
  /** Something behind the mount changed at path: drop what is cached about it. */
  forget(path: string): void { this.union.forgetPath(path); }
  resolveParent(path: string): { parent: Node; name: string } { return this.union.resolveParent(path); }

  getattr(node: Node): Attr { return attrs.getattr(this.union, node); }
  readlink(node: Node): string {
    const { layer, rel } = this.union.topLayer(node);
    return layer.readlink(rel);
  }
  readdir(node: Node): DirEntry[] { return readdir(this.union, node); }
  statfs(): Statfs { return attrs.statfs(this.union); }

  chmod(node: Node, mode: number): Promise<void> { return attrs.chmod(this.union, node, mode); }
  chown(node: Node, uid: number, gid: number): Promise<void> { return attrs.chown(this.union, node, uid, gid); }
  utimens(node: Node, atime: Timespec, mtime: Timespec): Promise<void> { return attrs.utimens(this.union, node, atime, mtime); }
  truncate(node: Node, size: number): Promise<void> { return attrs.truncate(this.union, node, size); }
  getxattr(node: Node, name: string): Buffer { return attrs.getxattr(this.union, node, name); }
  listxattr(node: Node): string[] { return attrs.listxattr(this.union, node); }
  setxattr(node: Node, name: string, value: Buffer, flags: number): Promise<void> {
    return attrs.setxattr(this.union, node, name, value, flags);
  }
  removexattr(node: Node, name: string): Promise<void> { return attrs.removexattr(this.union, node, name); }

  mkdir(parent: Node, name: string, mode: number, caller: Caller): Promise<Node> {
    return ns.mkdir(this.union, parent, name, mode, caller);
  }
  mknod(parent: Node, name: string, mode: number, rdev: bigint, caller: Caller): Promise<Node> {
    return ns.mknod(this.union, parent, name, mode, rdev, caller);
  }
  symlink(parent: Node, name: string, target: string, caller: Caller): Promise<Node> {
    return ns.symlink(this.union, parent, name, target, caller);
  }
  link(node: Node, parent: Node, name: string): Promise<Node> { return ns.link(this.union, node, parent, name); }
  unlink(parent: Node, name: string): Promise<void> { return ns.unlink(this.union, parent, name); }
  rmdir(parent: Node, name: string): Promise<void> { return ns.rmdir(this.union, parent, name); }
  rename(oldParent: Node, oldName: string, newParent: Node, newName: string, flags = 0): Promise<void> {
    return ns.rename(this.union, oldParent, oldName, newParent, newName, flags);
  }

  open(node: Node, flags: number): Promise<Handle> { return files.open(this.union, node, flags); }
  async create(parent: Node, name: string, mode: number, flags: number, caller: Caller): Promise<Handle> {
    const { node, fd } = await ns.create(this.union, parent, name, mode, flags, caller);
    return new files.Handle(fd, node);
  }
  read(h: Handle, buf: Buffer, length: number, position: number): Promise<number> { return files.read(h, buf, length, position); }
  write(h: Handle, buf: Buffer, length: number, position: number): Promise<number> { return files.write(h, buf, length, position); }
  fsync(h: Handle, datasync: boolean): Promise<void> { return files.fsync(h, datasync); }
  fgetattr(h: Handle): Attr { return files.fgetattr(this.union, h); }
  ftruncate(h: Handle, size: number): void { files.ftruncate(h, size); }
  release(h: Handle): Promise<void> { return files.release(h); }
  fallocate(h: Handle, mode: number, offset: number, length: number): void { files.fallocate(h, mode, offset, length); }
  lseek(h: Handle, offset: number, whence: number): number { return files.lseek(h, offset, whence); }
  copyFileRange(from: Handle, fromOffset: number, to: Handle, toOffset: number, length: number): number {
    return files.copyFileRange(from, fromOffset, to, toOffset, length);
  }
  flags(node: Node): number { return attrs.flags(this.union, node); }
}
