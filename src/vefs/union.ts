// The union of one private layer over template layers: lookup of a name in a
// parent node, and where each node's objects are. Header of the rules:
//
//  - A name resolves in the private layer first. A whiteout there hides it; a
//    non-directory there is the whole answer; a directory there merges with
//    the template directories of the same name (or of its redirect) unless
//    it is opaque.
//  - Otherwise the topmost template layer that has the name answers; a
//    directory merges with the directories below it until a whiteout, a
//    non-directory or an opaque directory stops the search.
//  - Template layers are never written. Every change goes to the private
//    layer, after copyup.ts has brought the object (and its parents) there.
import { native, C, type NativeStat } from '../../native/index.js';
import { fsError } from './errors.js';
import { METACOPY_XATTR, OPAQUE_XATTR, REDIRECT_XATTR, isMetacopyCandidate, isWhiteout, resolveRedirect } from './format.js';
import { Inodes } from './inodes.js';
import { Layer } from './layers.js';
import { Node } from './node.js';
import { components, join } from './paths.js';
import { WorkDir } from './work.js';
import type { MountConfig } from './types.js';

export class Union {
  readonly upper: Layer;
  readonly lowers: Layer[];
  readonly work: WorkDir;
  readonly inodes: Inodes;
  readonly root: Node;

  constructor(config: MountConfig) {
    this.upper = new Layer(config.privateDir, 'private', -1);
    this.lowers = config.templates.map((t, i) => new Layer(t, 'template', i));
    this.work = new WorkDir(config.workDir);
    this.inodes = new Inodes([this.upper.dev, ...this.lowers.map((l) => l.dev)]);
    const up = native.fstat(this.upper.fd);
    const rootLowers = this.lowers.map((l) => l.index);
    const top = this.lowers.length > 0 ? native.fstat(this.lowers[0].fd) : up;
    this.root = new Node(null, '', this.inodes.of(top), C.S_IFDIR, true, rootLowers, '');
  }

  close(): void {
    this.upper.close();
    for (const l of this.lowers) l.close();
    this.work.close();
  }

  resolve(path: string): Node {
    let node = this.root;
    for (const name of components(path)) node = this.lookup(node, name);
    return node;
  }

  /** The parent node of a binding path, and the last name. */
  resolveParent(path: string): { parent: Node; name: string } {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw fsError('EBUSY', 'the root has no parent');
    let parent = this.root;
    for (const p of parts) parent = this.lookup(parent, p);
    return { parent, name };
  }

  lookup(parent: Node, name: string): Node {
    const cached = parent.children.get(name);
    if (cached) return cached;
    if (parent.type !== C.S_IFDIR) throw fsError('ENOTDIR');
    const node = this.find(parent, name);
    if (!node) throw fsError('ENOENT');
    parent.children.set(name, node);
    return node;
  }

  /** Drops the cached node at a merged path, if any: the next lookup reads the layers again. */
  forgetPath(path: string): void {
    const parts = components(path);
    const name = parts.pop();
    let node: Node | undefined = this.root;
    for (const p of parts) node = node?.children.get(p);
    if (node && name !== undefined) node.forget(name);
    else if (node) node.children.clear();
  }

  /** Whether the name is visible, without caching a miss. */
  exists(parent: Node, name: string): Node | null {
    return parent.children.get(name) ?? this.find(parent, name);
  }

  private find(parent: Node, name: string): Node | null {
    const rel = join(parent.path(), name);
    let lowerPath = join(parent.lowerPath, name);
    const up = parent.upper ? this.upper.stat(rel) : null;
    if (up && isWhiteout(up)) return null;
    const upType = up ? up.mode & C.S_IFMT : 0;
    if (up && upType === C.S_IFREG && isMetacopyCandidate(up)) {
      const data = this.metacopyData(parent, rel, lowerPath);
      if (data) {
        // The template number only while it names this file alone (see inodes.ts).
        const identity = data.st.nlink === 1 ? data.st : up;
        const node = new Node(parent, name, this.inodes.of(identity), upType, true, [data.layer], data.path);
        node.metacopy = true;
        return node;
      }
    }
    let merge = !up;
    if (up && upType === C.S_IFDIR && !this.isOpaque(this.upper, rel)) {
      merge = true;
      const redirect = this.upper.getxattr(rel, REDIRECT_XATTR);
      if (redirect) lowerPath = resolveRedirect(redirect.toString(), parent.lowerPath);
    }
    const lowers: number[] = [];
    let top: NativeStat | null = null;
    if (merge) {
      for (const i of parent.lowers) {
        const layer = this.lowers[i];
        const st = layer.stat(lowerPath);
        if (!st) continue;
        if (isWhiteout(st)) break;
        const t = st.mode & C.S_IFMT;
        const wantDir = up !== null || lowers.length > 0;
        if (wantDir && t !== C.S_IFDIR) break;
        lowers.push(i);
        top ??= st;
        if (t !== C.S_IFDIR) break;
        // Only a layer with more layers below can hide them.
        if (i < this.lowers.length - 1 && this.isOpaque(layer, lowerPath)) break;
      }
    }
    if (!up && !top) return null;
    const type = up ? upType : (top!.mode & C.S_IFMT);
    const identity = type === C.S_IFDIR ? (top ?? up!) : (up ?? top!);
    return new Node(parent, name, this.inodes.of(identity), type, up !== null, lowers, lowerPath);
  }

  /** Where a private metacopy file's data is: its redirect, or the same path in the parent's template layers. */
  private metacopyData(parent: Node, rel: string, samePath: string): { layer: number; path: string; st: NativeStat } | null {
    if (!this.upper.getxattr(rel, METACOPY_XATTR)) return null;
    const redirect = this.upper.getxattr(rel, REDIRECT_XATTR)?.toString();
    const path = redirect ? resolveRedirect(redirect, parent.lowerPath) : samePath;
    // An absolute redirect starts over from the top of every template layer.
    const layers = redirect?.startsWith('/') ? this.lowers.map((l) => l.index) : parent.lowers;
    for (const i of layers) {
      const st = this.lowers[i].stat(path);
      if (!st) continue;
      if ((st.mode & C.S_IFMT) !== C.S_IFREG) break;
      return { layer: i, path, st };
    }
    throw fsError('EIO', `metacopy file ${rel} has no template data at ${path}`);
  }

  isOpaque(layer: Layer, rel: string): boolean {
    return layer.getxattr(rel, OPAQUE_XATTR)?.toString() === 'y';
  }

  /** The object a VE sees for this node: the private one if present, else the topmost template's. */
  topStat(node: Node): NativeStat {
    const st = node.upper ? this.upper.stat(node.path()) : this.lowers[node.lowers[0]].stat(node.lowerPath);
    if (!st) {
      node.parent?.forget(node.name);
      throw fsError('ENOENT', `${node.path()} vanished behind the mount`);
    }
    return st;
  }

  /** Where the node's data is: the template file for a metacopy file, else its visible object. */
  dataLayer(node: Node): { layer: Layer; rel: string } {
    return node.metacopy ? { layer: this.lowers[node.lowers[0]], rel: node.lowerPath } : this.topLayer(node);
  }

  /** The layer and path that hold the node's visible object (its metadata and xattrs). */
  topLayer(node: Node): { layer: Layer; rel: string } {
    return node.upper
      ? { layer: this.upper, rel: node.path() }
      : { layer: this.lowers[node.lowers[0]], rel: node.lowerPath };
  }

  /** Whether a template layer shows something under parent/name, so that removing the name needs a whiteout. */
  lowerHas(parent: Node, name: string): boolean {
    const rel = join(parent.lowerPath, name);
    for (const i of parent.lowers) {
      const st = this.lowers[i].stat(rel);
      if (st) return !isWhiteout(st);
    }
    return false;
  }
}
