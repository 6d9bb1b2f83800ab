// One mount's session of the FUSE kernel protocol: decodes each request,
// finds the nodes by node ID, calls one VefsFs method and encodes the reply
// or the errno. Every rule lives in VefsFs; what is decided here is only what
// the protocol leaves to a server:
//
//  - Cache validity: entries, negative entries and attributes are cached by
//    the kernel for `validity` seconds. Every change made through the mount
//    the kernel sees itself; a change behind the mount (unify, a template
//    update) is announced with invalidate(), which drops the union's cached
//    nodes and sends FUSE_NOTIFY_INVAL_ENTRY / _INODE.
//  - Passthrough: a regular file's open registers its layer file as the
//    inode's backing file, and the kernel then reads, writes and maps it
//    without asking this process. The kernel allows one backing file per
//    inode. When an open needs another file than the inode's current one
//    (the file was copied up, or unify or a copy-on-write replaced it, while
//    a descriptor opened before still uses the old one), the inode is
//    detached from its name and the open answers ESTALE: the kernel's path
//    walk then retries once with revalidation, looks the name up again, gets
//    a fresh node ID for the new file and opens that. The old descriptors
//    keep their file, as on any filesystem; no open ever reads the wrong one.
import { native, C } from '../../../../native/index.js';
import { errnoOf, fsError } from '../../errors.js';
import type { VefsFs } from '../../fs.js';
import type { Handle } from '../../files.js';
import { wantsWrite } from '../../files.js';
import type { Node } from '../../node.js';
import { join } from '../../paths.js';
import type { Attr, Caller } from '../../types.js';
import type { NodeJournal, Replayed } from './journal.js';
import { NodeTable, type KernelInode } from './nodes.js';
import * as P from './protocol.js';
import { Fattr, Fopen, Init, Op, type Request, type Validity } from './protocol.js';

export interface SessionOptions {
  /** Most asynchronous requests of this mount being served at once. */
  inFlight: number;
  log: (message: string) => void;
  /** Seconds the kernel may cache entries and attributes. */
  validity: Validity;
  /** Ask for passthrough I/O (used where the kernel offers it). */
  passthrough: boolean;
  /** Where node IDs are written down for a server that takes over (journal.ts). */
  journal: NodeJournal | null;
  /** Taking over a mount from a crashed server: its IDs, and whether it had passthrough. */
  resume: { replayed: Replayed } | null;
}

const FS_IOC_GETFLAGS = 0x80086601;
/** Set in the unique of a request the kernel sends again (FUSE_NOTIFY_RESEND). */
const UNIQUE_RESEND = 1n << 63n;
/** Requests that are not idempotent: done twice they would answer differently (journal.ts, "D"). */
const CHANGES_TREE = new Set<number>([Op.MKDIR, Op.MKNOD, Op.SYMLINK, Op.LINK, Op.UNLINK, Op.RMDIR, Op.RENAME,
  Op.RENAME2, Op.CREATE]);
const MAX_WRITE = 1 << 20;
const MINOR = 41;

interface FileHandle {
  kind: 'file';
  h: Handle;
  k: KernelInode;
  backed: boolean;
  writable: boolean;
}

interface DirHandle {
  kind: 'dir';
  k: KernelInode;
  entries: { name: string; ino: bigint; type: number }[] | null;
}

type Body = Buffer[];
const NO_REPLY = null;

export class Session {
  readonly table: NodeTable;
  private readonly handles = new Map<bigint, FileHandle | DirHandle>();
  private nextFh = 1n;
  private inFlight = 0;
  private readonly backlog: Buffer[] = [];
  private passthrough = false;
  private initialized = false;
  /** Requests served, by opcode: READ and WRITE stay at zero for files under passthrough. */
  readonly served = new Map<number, number>();
  private closed = false;

  constructor(private readonly fs: VefsFs, readonly dev: number, readonly mountpoint: string,
    private readonly opts: SessionOptions) {
    this.table = new NodeTable(fs.root, opts.journal, opts.resume?.replayed ?? null);
    if (opts.resume) {
      // The connection was initialised by the server before; the kernel will not say INIT again.
      this.initialized = true;
      this.passthrough = opts.resume.replayed.passthrough;
    }
  }

  /**
   * After a takeover: the requests the crashed server had read but not
   * answered go back to the kernel's queue and come again (FUSE_NOTIFY_RESEND).
   */
  resend(): Promise<void> {
    return this.notify(Buffer.alloc(0), P.Notify.RESEND);
  }

  /** Whether the kernel agreed to passthrough I/O for this mount. */
  get passthroughActive(): boolean {
    return this.passthrough;
  }

  receive(buf: Buffer): void {
    if (this.inFlight >= this.opts.inFlight) {
      this.backlog.push(buf);
      return;
    }
    this.dispatch(buf);
  }

  private dispatch(buf: Buffer): void {
    const r = new P.Request(buf);
    this.served.set(r.opcode, (this.served.get(r.opcode) ?? 0) + 1);
    const done = r.resent ? this.opts.resume?.replayed.done.get(r.unique & ~UNIQUE_RESEND) : undefined;
    if (r.resent) this.opts.log(`${this.mountpoint}: request ${r.unique & ~UNIQUE_RESEND} (opcode ${r.opcode}) resent after the takeover${done ? ', answered from the journal' : ''}`);
    if (done) {
      this.reply(r.unique, 0, [done]);
      return;
    }
    let result: Body | null | Promise<Body | null>;
    try {
      result = this.serve(r);
    } catch (err) {
      this.fail(r, err);
      return;
    }
    if (!(result instanceof Promise)) {
      if (result !== NO_REPLY) this.reply(r.unique, 0, result);
      return;
    }
    this.inFlight++;
    result.then((body) => {
      if (body !== NO_REPLY && CHANGES_TREE.has(r.opcode)) this.opts.journal?.replied(r.unique & ~UNIQUE_RESEND, body);
      if (body !== NO_REPLY) this.reply(r.unique, 0, body);
    }, (err) => this.fail(r, err)).finally(() => {
      this.inFlight--;
      const next = this.backlog.shift();
      if (next) this.dispatch(next);
    });
  }

  private reply(unique: bigint, error: number, body: Body): void {
    if (this.closed) return;
    const len = body.reduce((n, b) => n + b.length, 0);
    const err = native.fuseReply(this.dev, [P.outHeader(unique, error, error ? 0 : len), ...(error ? [] : body)]);
    // ENOENT: the request was interrupted and withdrawn; ENODEV: the mount is gone.
    if (err !== 0 && err !== 2 && err !== 19) this.opts.log(`${this.mountpoint}: reply failed with errno ${err}`);
  }

  private fail(r: Request, err: unknown): void {
    let errno = errnoOf(err);
    if (errno === undefined) {
      this.opts.log(`${this.mountpoint}: opcode ${r.opcode} on node ${r.nodeid}: unexpected error, answered EIO: ${(err as Error)?.stack ?? err}`);
      errno = 5;
    }
    this.reply(r.unique, -errno, []);
  }

  private inode(nodeid: bigint): KernelInode {
    const k = this.table.get(nodeid) ?? this.table.adopt(nodeid, (p) => this.fs.resolve(p));
    if (!k) throw fsError('ESTALE', `unknown node ID ${nodeid}`);
    return k;
  }

  private file(fh: bigint): FileHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'file') throw fsError('EBADF');
    return h;
  }

  private dir(fh: bigint, nodeid: bigint): DirHandle {
    const h = this.handles.get(fh);
    if (h?.kind === 'dir') return h;
    // A listing the crashed server had opened: start a new one on the same directory.
    if (h || !this.opts.resume) throw fsError('EBADF');
    const d: DirHandle = { kind: 'dir', k: this.inode(nodeid), entries: null };
    this.handles.set(fh, d);
    return d;
  }

  private entry(node: Node): Body {
    const a = this.fs.getattr(node);
    const k = this.table.lookedUp(node, a);
    const o = new P.Out(P.ENTRY_OUT);
    P.entryOut(o, k.nodeid, 0n, this.opts.validity, a);
    return [o.buf];
  }

  private attrOf(k: KernelInode, fh: bigint | null): Attr {
    const f = fh === null ? undefined : this.handles.get(fh);
    if (f?.kind === 'file') return this.fs.fgetattr(f.h);
    try {
      return this.fs.getattr(k.node);
    } catch (err) {
      // The kernel asks fstat of an unlinked file without its handle: any open descriptor of it knows.
      const open = errnoOf(err) === 2 ? [...this.handles.values()].find((h) => h.kind === 'file' && h.k === k) : undefined;
      if (open?.kind === 'file') return this.fs.fgetattr(open.h);
      throw err;
    }
  }

  private async rename(from: Node, oldName: string, to: Node, newName: string, flags: number): Promise<Body> {
    const moving = this.fs.lookup(from, oldName);
    const over = flags & C.RENAME_EXCHANGE ? null : this.fs.union.exists(to, newName);
    const oldPath = join(from.path(), oldName);
    const newPath = join(to.path(), newName);
    await this.fs.rename(from, oldName, to, newName, flags);
    if (flags & C.RENAME_EXCHANGE) {
      const swap = `${oldPath}\0`;
      this.table.renamed(oldPath, swap);
      this.table.renamed(newPath, oldPath);
      this.table.renamed(swap, newPath);
    } else {
      this.table.renamed(oldPath, newPath);
    }
    // Renaming over another name of the same file changes nothing (rename(2)).
    if (over && over !== moving && (over.ino !== moving.ino || over.type === C.S_IFDIR)) this.table.removed(over);
    return [];
  }

  /**
   * The entry of an object a request created. A request resent after a
   * takeover that finds its object there already was done by the crashed
   * server: it answers as if it had just made it.
   */
  private async made(r: Request, parent: Node, name: string, making: Promise<Node>): Promise<Body> {
    try {
      return this.entry(await making);
    } catch (err) {
      if (r.resent && errnoOf(err) === 17) return this.entry(this.fs.lookup(parent, name));
      throw err;
    }
  }

  /** Runs a removal of parent/name and tells the node table which name went. */
  private async removing(r: Request, parent: Node, name: string, remove: () => Promise<void>): Promise<Body> {
    let victim: Node | null = null;
    try {
      victim = this.fs.lookup(parent, name);
    } catch {
      // Resent after a takeover and already done by the crashed server.
      if (r.resent) return [];
    }
    await remove();
    if (victim) this.table.removed(victim);
    return [];
  }

  private serve(r: Request): Body | null | Promise<Body | null> {
    if (!this.initialized && r.opcode !== Op.INIT) throw fsError('EIO', 'request before INIT');
    const caller = (): Caller => ({ uid: r.uid, gid: r.gid });
    switch (r.opcode) {
      case Op.INIT: return this.init(r);
      case Op.DESTROY: return [];
      case Op.INTERRUPT: return NO_REPLY;
      case Op.FORGET:
        this.table.forget(r.nodeid, r.n64());
        return NO_REPLY;
      case Op.BATCH_FORGET: {
        const count = r.u32();
        r.skip(4);
        for (let i = 0; i < count; i++) this.table.forget(r.u64(), r.n64());
        return NO_REPLY;
      }
      case Op.LOOKUP: {
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        let node: Node;
        try {
          node = this.fs.lookup(parent, name);
        } catch (err) {
          if (errnoOf(err) !== 2) throw err;
          // A negative entry: the kernel remembers the miss as long as a hit.
          const o = new P.Out(P.ENTRY_OUT);
          P.entryOut(o, 0n, 0n, this.opts.validity, null);
          return [o.buf];
        }
        return this.entry(node);
      }
      case Op.GETATTR: {
        const flags = r.u32();
        r.skip(4);
        const fh = r.u64();
        return [P.attrOut(this.attrOf(this.inode(r.nodeid), flags & P.GETATTR_FH ? fh : null), this.opts.validity)];
      }
      case Op.STATX: {
        const flags = r.u32();
        r.skip(4);
        const fh = r.u64();
        return [P.statxOut(this.attrOf(this.inode(r.nodeid), flags & P.GETATTR_FH ? fh : null), this.opts.validity)];
      }
      case Op.SETATTR: return this.setattr(r);
      case Op.READLINK: return [Buffer.from(this.fs.readlink(this.inode(r.nodeid).node), 'latin1')];
      case Op.SYMLINK: {
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        const target = r.name();
        return this.made(r, parent, name, this.fs.symlink(parent, name, target, caller()));
      }
      case Op.MKNOD: {
        const mode = r.u32();
        const rdev = r.u32();
        r.skip(8);
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        return this.made(r, parent, name, this.fs.mknod(parent, name, mode, P.decodeDev(rdev), caller()));
      }
      case Op.MKDIR: {
        const mode = r.u32();
        r.skip(4);
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        return this.made(r, parent, name, this.fs.mkdir(parent, name, mode, caller()));
      }
      case Op.UNLINK: {
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        return this.removing(r, parent, name, () => this.fs.unlink(parent, name));
      }
      case Op.RMDIR: {
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        return this.removing(r, parent, name, () => this.fs.rmdir(parent, name));
      }
      case Op.RENAME:
      case Op.RENAME2: {
        const newdir = r.u64();
        const flags = r.opcode === Op.RENAME2 ? r.u32() : 0;
        if (r.opcode === Op.RENAME2) r.skip(4);
        const from = this.inode(r.nodeid).node;
        const to = this.inode(newdir).node;
        const oldName = r.name();
        const newName = r.name();
        return this.rename(from, oldName, to, newName, flags).catch((err) => {
          // Resent after a takeover and already done: the old name is gone, the new one is there.
          if (r.resent && errnoOf(err) === 2 && this.fs.union.exists(to, newName)) return [];
          throw err;
        });
      }
      case Op.LINK: {
        const k = this.inode(r.u64());
        const parent = this.inode(r.nodeid).node;
        return this.fs.link(k.node, parent, r.name()).then((n) => {
          // The same inode under a new name; its reply also refreshes the attributes the copy-up changed.
          const a = this.fs.getattr(n);
          this.table.linked(k, n, a);
          k.lookups++;
          const o = new P.Out(P.ENTRY_OUT);
          P.entryOut(o, k.nodeid, 0n, this.opts.validity, a);
          return [o.buf];
        });
      }
      case Op.OPEN: {
        const flags = r.u32();
        return this.open(this.inode(r.nodeid), flags);
      }
      case Op.CREATE: {
        const flags = r.u32();
        const mode = r.u32();
        r.skip(8);
        const parent = this.inode(r.nodeid).node;
        const name = r.name();
        return this.create(r, parent, name, mode, flags, caller());
      }
      case Op.READ: {
        const f = this.file(r.u64());
        const offset = r.n64();
        const size = r.u32();
        const buf = Buffer.allocUnsafe(size);
        return this.fs.read(f.h, buf, size, offset).then((n) => [buf.subarray(0, n)]);
      }
      case Op.WRITE: {
        const f = this.file(r.u64());
        const offset = r.n64();
        const size = r.u32();
        const data = r.skip(20).rest();
        return this.fs.write(f.h, data, size, offset).then((n) => [P.u32Out(n)]);
      }
      case Op.FLUSH: return [];
      case Op.RELEASE: return this.release(r.u64());
      case Op.FSYNC: {
        const fh = r.u64();
        const datasync = (r.u32() & P.FSYNC_FDATASYNC) !== 0;
        if (!this.handles.has(fh) && this.opts.resume) return this.fsyncByNode(this.inode(r.nodeid), datasync);
        return this.fs.fsync(this.file(fh).h, datasync).then(() => []);
      }
      case Op.STATFS: {
        const s = this.fs.statfs();
        const o = new P.Out(80).u64(s.blocks).u64(s.bfree).u64(s.bavail).u64(s.files).u64(s.ffree)
          .u32(s.bsize).u32(s.namemax).u32(s.frsize);
        return [o.buf];
      }
      case Op.SETXATTR: {
        const size = r.u32();
        const flags = r.u32();
        const name = r.name();
        const value = Buffer.from(r.rest().subarray(0, size));
        return this.fs.setxattr(this.inode(r.nodeid).node, name, value, flags).then(() => []);
      }
      case Op.GETXATTR: {
        const size = r.u32();
        r.skip(4);
        return sized(this.fs.getxattr(this.inode(r.nodeid).node, r.name()), size);
      }
      case Op.LISTXATTR: {
        const size = r.u32();
        const names = this.fs.listxattr(this.inode(r.nodeid).node);
        return sized(Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1'), size);
      }
      case Op.REMOVEXATTR: return this.fs.removexattr(this.inode(r.nodeid).node, r.name()).then(() => []);
      case Op.OPENDIR: {
        const k = this.inode(r.nodeid);
        if (k.node.type !== C.S_IFDIR) throw fsError('ENOTDIR');
        const fh = this.nextFh++;
        this.handles.set(fh, { kind: 'dir', k, entries: null });
        // The kernel keeps the listing: it drops it itself when a change through the mount touches
        // the directory, and on FUSE_NOTIFY_INVAL_INODE for a change behind it (invalidate()).
        return [P.openOut(fh, Fopen.CACHE_DIR | Fopen.KEEP_CACHE, 0)];
      }
      case Op.READDIR:
      case Op.READDIRPLUS: return this.readdir(r, r.opcode === Op.READDIRPLUS);
      case Op.RELEASEDIR:
        this.handles.delete(r.u64());
        return [];
      case Op.FSYNCDIR: return [];
      case Op.IOCTL: return this.ioctl(r);
      case Op.FALLOCATE: {
        const f = this.file(r.u64());
        const offset = r.n64();
        const length = r.n64();
        this.fs.fallocate(f.h, r.u32(), offset, length);
        return [];
      }
      case Op.LSEEK: {
        const f = this.file(r.u64());
        const offset = r.n64();
        return [P.u64Out(this.fs.lseek(f.h, offset, r.u32()))];
      }
      case Op.COPY_FILE_RANGE: {
        const from = this.file(r.u64());
        const fromOffset = r.n64();
        r.skip(8);
        const to = this.file(r.u64());
        const toOffset = r.n64();
        const length = r.n64();
        return [P.u32Out(this.fs.copyFileRange(from.h, fromOffset, to.h, toOffset, length))];
      }
      default:
        throw fsError('ENOSYS');
    }
  }

  private init(r: Request): Body {
    const i = P.initIn(r);
    if (i.major !== 7) throw fsError('EPROTO', `kernel speaks FUSE ${i.major}.${i.minor}`);
    const want = Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.AUTO_INVAL_DATA
      | Init.DO_READDIRPLUS | Init.READDIRPLUS_AUTO | Init.PARALLEL_DIROPS | Init.POSIX_ACL | Init.MAX_PAGES
      | Init.CACHE_SYMLINKS | Init.INIT_EXT;
    const flags = want & i.flags;
    const flags2 = this.opts.passthrough ? Init.PASSTHROUGH2 & i.flags2 : 0;
    this.passthrough = flags2 !== 0;
    this.initialized = true;
    this.opts.journal?.initialized(this.passthrough);
    return [P.initOut({
      minor: Math.min(i.minor, MINOR),
      maxReadahead: i.maxReadahead,
      flags,
      flags2,
      maxBackground: 64,
      congestionThreshold: 48,
      maxWrite: MAX_WRITE,
      maxPages: MAX_WRITE / 4096,
      // Backing files live on plain filesystems (ext4 and the like), one level below this one.
      maxStackDepth: this.passthrough ? 1 : 0,
    })];
  }

  private async setattr(r: Request): Promise<Body> {
    const valid = r.u32();
    r.skip(4);
    const fh = r.u64();
    const size = r.n64();
    r.skip(8);
    const atime = r.i64();
    const mtime = r.i64();
    r.skip(8);
    const atimensec = r.u32();
    const mtimensec = r.u32();
    r.skip(4);
    const mode = r.u32();
    r.skip(4);
    const uid = r.u32();
    const gid = r.u32();
    const k = this.inode(r.nodeid);
    const f = valid & Fattr.FH ? this.handles.get(fh) : undefined;
    const file = f?.kind === 'file' ? f : undefined;
    if (valid & Fattr.MODE) await this.fs.chmod(k.node, mode);
    if (valid & (Fattr.UID | Fattr.GID)) {
      await this.fs.chown(k.node, valid & Fattr.UID ? uid : -1, valid & Fattr.GID ? gid : -1);
    }
    if (valid & Fattr.SIZE) {
      if (file && !file.h.dataOnly) this.fs.ftruncate(file.h, size);
      else await this.fs.truncate(k.node, size);
    }
    if (valid & (Fattr.ATIME | Fattr.MTIME | Fattr.ATIME_NOW | Fattr.MTIME_NOW)) {
      const t = (set: number, now: number, sec: number, nsec: number) =>
        valid & now ? { sec: 0, nsec: C.UTIME_NOW } : valid & set ? { sec, nsec } : { sec: 0, nsec: C.UTIME_OMIT };
      await this.fs.utimens(k.node, t(Fattr.ATIME, Fattr.ATIME_NOW, atime, atimensec),
        t(Fattr.MTIME, Fattr.MTIME_NOW, mtime, mtimensec));
    }
    return [P.attrOut(this.attrOf(k, file ? fh : null), this.opts.validity)];
  }

  private addFile(h: Handle, k: KernelInode, flags: number): { fh: bigint; openFlags: number; backingId: number } {
    let openFlags = 0;
    let backingId = 0;
    let backed = false;
    if (this.passthrough && k.node.type === C.S_IFREG) {
      const st = native.fstat(h.fd);
      const ident = `${st.dev}:${st.ino}`;
      if (k.backing && k.backing.ident !== ident) {
        this.table.detach(k);
        throw fsError('ESTALE', `${k.node.path()} changed files while open; the kernel retries with a fresh node`);
      }
      k.backing ??= { id: native.fuseBackingOpen(this.dev, h.fd), ident, opens: 0 };
      k.backing.opens++;
      backingId = k.backing.id;
      openFlags = Fopen.PASSTHROUGH;
      backed = true;
    }
    const fh = this.nextFh++;
    this.handles.set(fh, { kind: 'file', h, k, backed, writable: wantsWrite(flags) });
    return { fh, openFlags, backingId };
  }

  private async open(k: KernelInode, flags: number): Promise<Body> {
    if (k.recovered && this.passthrough && k.node.type === C.S_IFREG) {
      // The kernel inode may still carry the crashed server's backing file: a fresh ID has none.
      this.table.detach(k);
      throw fsError('ESTALE', `${k.node.path()} is re-looked-up after the takeover`);
    }
    const ino = k.node.ino;
    const h = await this.fs.open(k.node, flags);
    // A copy-up that broke a template hard link gave the file a number of its own: the cached one is stale.
    if (k.node.ino !== ino) this.notify(P.invalInode(k.nodeid), P.Notify.INVAL_INODE);
    try {
      const { fh, openFlags, backingId } = this.addFile(h, k, flags);
      return [P.openOut(fh, openFlags, backingId)];
    } catch (err) {
      await this.fs.release(h);
      throw err;
    }
  }

  private async create(r: Request, parent: Node, name: string, mode: number, flags: number, caller: Caller): Promise<Body> {
    let h: Handle;
    try {
      h = await this.fs.create(parent, name, mode, flags, caller);
    } catch (err) {
      if (!r.resent || errnoOf(err) !== 17) throw err;
      // Resent after a takeover and already done: open what the crashed server created.
      h = await this.fs.open(this.fs.lookup(parent, name), flags & ~(C.O_CREAT | C.O_EXCL));
    }
    try {
      const [entry] = this.entry(h.node);
      const k = this.inode(entry.readBigUInt64LE(0));
      const { fh, openFlags, backingId } = this.addFile(h, k, flags);
      return [entry, P.openOut(fh, openFlags, backingId)];
    } catch (err) {
      await this.fs.release(h);
      throw err;
    }
  }

  /** fsync of a descriptor the crashed server had opened: the file itself, through a descriptor of our own. */
  private async fsyncByNode(k: KernelInode, datasync: boolean): Promise<Body> {
    const h = await this.fs.open(k.node, C.O_RDONLY);
    try {
      await this.fs.fsync(h, datasync);
    } finally {
      await this.fs.release(h);
    }
    return [];
  }

  private async release(fh: bigint): Promise<Body> {
    // The crashed server's descriptors died with it: nothing is left to close.
    if (!this.handles.has(fh) && this.opts.resume) return [];
    const f = this.file(fh);
    this.handles.delete(fh);
    const b = f.k.backing;
    if (f.backed && b && --b.opens === 0) {
      f.k.backing = null;
      native.fuseBackingClose(this.dev, b.id);
    }
    await this.fs.release(f.h);
    return [];
  }

  private readdir(r: Request, plus: boolean): Body {
    const d = this.dir(r.u64(), r.nodeid);
    const offset = r.n64();
    const size = r.u32();
    const dir = d.k.node;
    // A listing is one snapshot from its start, so that offsets stay meaningful while names change.
    if (offset === 0 || !d.entries) {
      const up = dir.parent ?? dir;
      d.entries = [{ name: '.', ino: dir.ino, type: C.S_IFDIR }, { name: '..', ino: up.ino, type: C.S_IFDIR },
        ...this.fs.readdir(dir)];
    }
    const o = new P.Out(size);
    for (let i = offset; i < d.entries.length; i++) {
      const e = d.entries[i];
      if (o.offset + P.direntSize(e.name, plus) > size) break;
      if (!plus) {
        P.dirent(o, e.ino, i + 1, e.type, e.name);
        continue;
      }
      if (e.name === '.' || e.name === '..') {
        // The kernel takes no lookup for these: node ID 0 says "no entry attached".
        P.entryOut(o, 0n, 0n, { entrySec: 0, attrSec: 0 }, null);
        P.dirent(o, e.ino, i + 1, e.type, e.name);
        continue;
      }
      let node: Node;
      let a: Attr;
      try {
        node = this.fs.lookup(dir, e.name);
        a = this.fs.getattr(node);
      } catch (err) {
        if (errnoOf(err) !== 2) throw err;
        continue; // gone since the snapshot
      }
      const k = this.table.lookedUp(node, a);
      P.entryOut(o, k.nodeid, 0n, this.opts.validity, a);
      P.dirent(o, a.ino, i + 1, a.mode & C.S_IFMT, e.name);
    }
    return [o.buf.subarray(0, o.offset)];
  }

  private ioctl(r: Request): Body {
    const fh = r.u64();
    r.skip(4);
    const cmd = r.u32();
    r.skip(12);
    const outSize = r.u32();
    if (cmd !== FS_IOC_GETFLAGS) throw fsError('ENOTTY');
    const h = this.handles.get(fh);
    const k = h ? h.k : this.inode(r.nodeid);
    const out = new P.Out(16 + outSize).u32(0).u32(0).u32(0).u32(0);
    if (outSize >= 4) out.u32(this.fs.flags(k.node));
    return [out.buf];
  }

  /** Counts of requests served, by protocol name. */
  counts(): Record<string, number> {
    const names = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
    return Object.fromEntries([...this.served].map(([op, n]) => [names.get(op) ?? `op${op}`, n]));
  }

  /** Descriptors open for writing, as private paths, for unify to leave alone. */
  openForWriting(): string[] {
    const out: string[] = [];
    for (const h of this.handles.values()) if (h.kind === 'file' && h.writable) out.push(h.h.node.path());
    return out;
  }

  /**
   * Something behind the mount changed the object at rel (a merged path) or
   * below it: forget what the union and the kernel cached about it, so that
   * every later lookup and open sees the new state.
   */
  invalidate(rel: string): Promise<void>[] {
    const sent: Promise<void>[] = [];
    const notify = (msg: Buffer, code: number) => sent.push(this.notify(msg, code));
    for (const k of this.table.under(rel)) {
      k.node.children.clear();
      notify(P.invalInode(k.nodeid), P.Notify.INVAL_INODE);
    }
    const slash = rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : rel.slice(0, slash);
    const name = rel.slice(slash + 1);
    for (const k of this.table.under(parentRel)) {
      if (k.node.path() !== parentRel || k.detached) continue;
      k.node.forget(name);
      if (name !== '') notify(P.invalEntry(k.nodeid, name), P.Notify.INVAL_ENTRY);
    }
    return sent;
  }

  /** A notification, written off the event loop; a failure only means the kernel had nothing cached. */
  private notify(msg: Buffer, code: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return native.fuseNotify(this.dev, Buffer.concat([P.outHeader(0n, code, msg.length), msg])).catch(() => undefined);
  }

  /** The mount is gone: close every descriptor and backing file it held. */
  async close(): Promise<void> {
    this.closed = true;
    for (const [fh, h] of this.handles) {
      this.handles.delete(fh);
      if (h.kind === 'file') await this.fs.release(h.h).catch(() => undefined);
    }
  }
}

/** A getxattr/listxattr answer: the size when asked for it, ERANGE when it does not fit. */
function sized(value: Buffer, size: number): Body {
  if (size === 0) return [P.u32Out(value.length)];
  if (value.length > size) throw fsError('ERANGE');
  return [value];
}
