// Node IDs: what the kernel calls an inode of this mount, with the lookup
// count it holds on it. The kernel keeps an ID for as long as it caches the
// inode, across renames of any of its names, and says so with FORGET.
//
// One ID stands for one object, as on kernel overlayfs: the names of a
// private file with hard links share one kernel inode (so a write through one
// name shows in the size of the other, and one passthrough backing file
// serves them all). A template file with several names does not: a copy-up
// of one name gives that name a file of its own (overlayfs without index).
import { C } from '../../../../native/index.js';
import type { Node } from '../../node.js';
import type { Attr } from '../../types.js';
import type { NodeJournal, Replayed } from './journal.js';
import { ROOT_ID } from './protocol.js';

/** The passthrough backing file registered for an inode, shared by its opens. */
export interface Backing {
  id: number;
  /** dev:ino of the file, to tell whether another open means the same one. */
  ident: string;
  opens: number;
}

export class KernelInode {
  lookups = 0;
  backing: Backing | null = null;
  /** Replaced by a fresh ID for its name (see Session.open); serves only what was open before. */
  detached = false;
  /** Taken over from a crashed server: its lookup count is unknown and it may carry that server's backing file. */
  recovered = false;
  /** Its names in the merged tree that the kernel knows; `node` is the one that serves requests. */
  readonly names = new Set<Node>();
  constructor(readonly nodeid: bigint, public node: Node, public key: string | null) {
    this.names.add(node);
  }
}

function keyOf(node: Node, a: Attr): string | null {
  if (node.type === C.S_IFDIR || node.upper || a.nlink === 1) return `${a.ino}`;
  return null;
}

export class NodeTable {
  private readonly byId = new Map<bigint, KernelInode>();
  private readonly byKey = new Map<string, KernelInode>();
  private readonly byNode = new WeakMap<Node, KernelInode>();
  private next = ROOT_ID + 1n;
  /** IDs a crashed server handed out, by path, adopted when the kernel first uses each. */
  private readonly orphans: Map<bigint, string>;

  constructor(root: Node, private readonly journal: NodeJournal | null = null, replayed: Replayed | null = null) {
    this.orphans = replayed?.paths ?? new Map();
    if (replayed) this.next = replayed.next;
    const k = new KernelInode(ROOT_ID, root, null);
    k.lookups = 1;
    this.byId.set(ROOT_ID, k);
    this.byNode.set(root, k);
  }

  get size(): number {
    return this.byId.size;
  }

  get(nodeid: bigint): KernelInode | undefined {
    return this.byId.get(nodeid);
  }

  /** The kernel inode a lookup (or a creation, or a READDIRPLUS entry) of node hands out: one more lookup on it. */
  lookedUp(node: Node, a: Attr): KernelInode {
    let k = this.byNode.get(node);
    if (!k || k.detached || this.byId.get(k.nodeid) !== k) {
      const key = keyOf(node, a);
      const shared = key === null ? undefined : this.byKey.get(key);
      if (shared && !shared.detached) {
        k = shared;
        // The most recent name serves the inode's requests: all its names are one object.
        k.node = node;
        k.names.add(node);
      } else {
        k = new KernelInode(this.next++, node, key);
        this.journal?.allocated(k.nodeid, node.path());
        this.byId.set(k.nodeid, k);
        if (key !== null) this.byKey.set(key, k);
      }
      this.byNode.set(node, k);
    }
    k.lookups++;
    return k;
  }

  /**
   * A hard link made through the mount: the new name is the same kernel
   * inode, whose key may have changed with the copy-up that link needed.
   */
  linked(k: KernelInode, node: Node, a: Attr): void {
    const key = keyOf(node, a);
    if (k.key !== null && this.byKey.get(k.key) === k) this.byKey.delete(k.key);
    k.key = key;
    if (key !== null) this.byKey.set(key, k);
    k.names.add(node);
    this.byNode.set(node, k);
  }

  /** A name of the inode was removed: another of its names serves it from now on. */
  removed(node: Node): void {
    const k = this.byNode.get(node);
    if (!k) return;
    this.byNode.delete(node);
    k.names.delete(node);
    if (k.node === node && k.names.size > 0) k.node = k.names.values().next().value!;
  }

  /** Returns true when the kernel holds the inode no more. */
  forget(nodeid: bigint, count: number): KernelInode | null {
    const k = this.byId.get(nodeid);
    if (!k || nodeid === ROOT_ID) {
      if (this.orphans.delete(nodeid)) this.journal?.forgot(nodeid);
      return null;
    }
    k.lookups -= count;
    if (k.lookups > 0) return null;
    this.byId.delete(nodeid);
    this.journal?.forgot(nodeid);
    if (k.key !== null && this.byKey.get(k.key) === k) this.byKey.delete(k.key);
    // Every name: a hard link's other name handing out this dead ID would make the kernel's next use of it ESTALE.
    for (const n of k.names) if (this.byNode.get(n) === k) this.byNode.delete(n);
    // The union's cache of names follows the kernel's: a leaf the kernel let go of is looked up afresh next time.
    const { parent, name } = k.node;
    if (k.node.children.size === 0 && parent && parent.children.get(name) === k.node) parent.forget(name);
    return k;
  }

  /**
   * An ID a crashed server handed out, looked up by the path the journal
   * gives it, or null when nothing is there any more.
   */
  adopt(nodeid: bigint, resolve: (path: string) => Node): KernelInode | null {
    const path = this.orphans.get(nodeid);
    if (path === undefined) return null;
    this.orphans.delete(nodeid);
    let node: Node;
    try {
      node = resolve(path);
    } catch {
      return null;
    }
    const k = new KernelInode(nodeid, node, null);
    k.recovered = true;
    // The kernel's count is unknown: it may forget any number, so the ID lives until unmount.
    k.lookups = Number.MAX_SAFE_INTEGER;
    this.byId.set(nodeid, k);
    this.byNode.set(node, k);
    return k;
  }

  renamed(from: string, to: string): void {
    this.journal?.renamed(from, to);
  }

  /** The next lookup of this inode's name gets a new ID; this one lives on for what is open. */
  detach(k: KernelInode): void {
    k.detached = true;
    if (k.key !== null && this.byKey.get(k.key) === k) this.byKey.delete(k.key);
    if (this.byNode.get(k.node) === k) this.byNode.delete(k.node);
  }

  /** Every live ID whose node lies under the private path rel (or is it). */
  under(rel: string): KernelInode[] {
    const out: KernelInode[] = [];
    for (const k of this.byId.values()) {
      const p = k.node.path();
      if (p === rel || p.startsWith(rel === '' ? '' : `${rel}/`)) out.push(k);
    }
    return out;
  }
}
