// A merged directory's entries: the private layer's, then each merged
// template layer's names not seen above, minus every name a whiteout hides
// (a whiteout in a template layer hides the layers below it too). Entries
// carry the same inode number getattr gives, so `ls -i` and `find -inum`
// agree with `stat`.
import { C, type NativeDirent } from '../../native/index.js';
import { isWhiteout } from './format.js';
import type { Layer } from './layers.js';
import type { Node } from './node.js';
import { join } from './paths.js';
import type { DirEntry } from './types.js';
import type { Union } from './union.js';

/** S_IFMT bits are the DT_* value shifted into place. */
const typeOf = (e: NativeDirent): number => e.type << 12;

export function readdir(u: Union, node: Node): DirEntry[] {
  const entries = new Map<string, DirEntry & { fromLower: boolean }>();
  const hidden = new Set<string>();
  const scan = (layer: Layer, rel: string, below: boolean): void => {
    for (const e of layer.readdir(rel)) {
      const seen = entries.get(e.name);
      if (seen) {
        // A directory takes its number from the topmost template directory it merges with.
        if (below && seen.type === C.S_IFDIR && e.type === C.DT_DIR && !node.children.has(e.name) && !seen.fromLower) {
          seen.ino = u.inodes.of({ dev: layer.dev, ino: e.ino });
          seen.fromLower = true;
        }
        continue;
      }
      if (hidden.has(e.name)) continue;
      let type = typeOf(e);
      if (e.type === C.DT_CHR || e.type === C.DT_UNKNOWN) {
        const st = layer.stat(join(rel, e.name));
        if (!st) continue;
        if (isWhiteout(st)) {
          hidden.add(e.name);
          continue;
        }
        type = st.mode & C.S_IFMT;
      }
      const cached = node.children.get(e.name);
      entries.set(e.name, {
        name: e.name,
        type,
        ino: cached ? cached.ino : u.inodes.of({ dev: layer.dev, ino: e.ino }),
        fromLower: below,
      });
    }
  };
  if (node.upper) scan(u.upper, node.path(), false);
  for (const i of node.lowers) scan(u.lowers[i], node.lowerPath, true);
  return [...entries.values()].map(({ name, type, ino }) => ({ name, type, ino }));
}

/** Whether the merged directory has any entry: rmdir and rename over a directory need it empty. */
export function isEmptyDir(u: Union, node: Node): boolean {
  return readdir(u, node).length === 0;
}
