// A node is one name in the merged tree and where its objects are: in the
// private layer, in template layers, or both. Nodes are cached in their
// parent's children map; every rule that changes a name drops or updates the
// cached entry, so a cached node always describes the trees as VEFS left them.
import { join } from './paths.js';

export class Node {
  readonly children = new Map<string, Node>();
  /** A private metacopy file: metadata here, data in lowers[0] at lowerPath. */
  metacopy = false;

  constructor(
    public parent: Node | null,
    public name: string,
    /** VEFS inode number: unique in the mount and stable while it is mounted (see inodes.ts). */
    public ino: bigint,
    /** S_IFMT bits. */
    public type: number,
    /** Present in the private layer. */
    public upper: boolean,
    /** Template layers holding it, topmost first: only the topmost for a non-directory, every merged one for a directory. */
    public lowers: number[],
    /** Its path inside those template layers; differs from path() after a directory rename (redirect). */
    public lowerPath: string,
  ) {}

  /** Path in the merged tree, which is also its path in the private layer. */
  path(): string {
    return this.parent === null ? '' : join(this.parent.path(), this.name);
  }

  forget(name: string): void {
    this.children.delete(name);
  }
}
