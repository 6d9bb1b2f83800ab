// VEFS inode numbers. A VE must see numbers that are unique within the mount
// and stable while it is mounted (find, tar, du and rsync -H depend on it),
// while its objects live on several filesystems.
//
//  - An object's number is its real inode number, tagged in the top byte
//    with the index of its filesystem when the layers span more than one
//    (overlayfs's "xino" idea). Layers on one filesystem keep real numbers.
//  - A directory that exists in a template takes the template's number, so a
//    merged directory keeps it when it is copied up (overlayfs does the same).
//  - A file keeps its template number across its own copy-up: the private
//    copy's number is remapped for the life of the mount. Only when the
//    template file has a single name; otherwise the number would also stand
//    for the template's other names, which now are a different file.
import { type NativeStat } from '../../native/index.js';

const TAG_SHIFT = 56n;

export class Inodes {
  private readonly devs = new Map<bigint, bigint>();
  private readonly remap = new Map<string, bigint>();

  /** devs in layer order, private first, so numbers of the private tree are its real ones. */
  constructor(devs: bigint[]) {
    for (const d of devs) this.tag(d);
  }

  private tag(dev: bigint): bigint {
    let t = this.devs.get(dev);
    if (t === undefined) {
      t = BigInt(this.devs.size);
      this.devs.set(dev, t);
    }
    return t;
  }

  of(st: { dev: bigint; ino: bigint }): bigint {
    return this.remap.get(key(st)) ?? ((this.tag(st.dev) << TAG_SHIFT) | st.ino);
  }

  /** Called when a copy-up publishes `copy` for the template object `origin`. */
  copiedUp(origin: NativeStat, copy: NativeStat): void {
    if (origin.nlink === 1) this.remap.set(key(copy), this.of(origin));
  }

  /** The private object is gone for good: its number may be reused by the filesystem. */
  released(st: NativeStat): void {
    if (st.nlink <= 1) this.remap.delete(key(st));
  }
}

function key(st: { dev: bigint; ino: bigint }): string {
  return `${st.dev}:${st.ino}`;
}
