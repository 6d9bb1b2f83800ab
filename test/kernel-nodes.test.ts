// The kernel binding's node table without a mount: the node IDs it hands
// out, and that an ID the kernel has forgotten is never handed out again.
import test from 'ava';
import { NodeTable } from '../src/vefs/binding/kernel/nodes.js';
import { Node } from '../src/vefs/node.js';
import { C } from '../native/index.js';
import type { Attr } from '../src/vefs/types.js';

const attr = (ino: bigint, nlink: number, type = C.S_IFREG): Attr => ({
  mode: type | 0o644, uid: 0, gid: 0, size: 1, nlink, ino, rdev: 0n, blksize: 4096, blocks: 8,
  atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n,
} as unknown as Attr);

function tree() {
  const root = new Node(null, '', 1n, C.S_IFDIR, true, [], '');
  const dir = new Node(root, 'bin', 2n, C.S_IFDIR, true, [], 'bin');
  const tool = new Node(dir, 'tool', 3n, C.S_IFREG, true, [], 'bin/tool');
  const tool2 = new Node(dir, 'tool2', 3n, C.S_IFREG, true, [], 'bin/tool2');
  root.children.set('bin', dir);
  dir.children.set('tool', tool);
  dir.children.set('tool2', tool2);
  return { root, dir, tool, tool2 };
}

test('hard-linked private names share one ID, counted per lookup', (t) => {
  const { root, tool, tool2 } = tree();
  const table = new NodeTable(root);
  const a = table.lookedUp(tool, attr(3n, 2));
  const b = table.lookedUp(tool2, attr(3n, 2));
  t.is(a, b);
  t.is(a.lookups, 2);
  t.is(table.forget(a.nodeid, 1), null, 'still one lookup left');
  t.is(table.get(a.nodeid), a);
});

test('an ID the kernel forgot is not handed out again through another name of the same inode', (t) => {
  const { root, tool, tool2 } = tree();
  const table = new NodeTable(root);
  const k = table.lookedUp(tool, attr(3n, 2));
  table.linked(k, tool2, attr(3n, 2));
  k.lookups++;
  t.is(table.forget(k.nodeid, 2), k, 'the kernel let go of both names');
  t.is(table.get(k.nodeid), undefined);
  const again = table.lookedUp(tool2, attr(3n, 2));
  t.not(again.nodeid, k.nodeid, 'a fresh ID, not the forgotten one');
  t.is(table.get(again.nodeid), again);
  t.is(table.lookedUp(tool, attr(3n, 2)), again, 'and the other name shares it');
});

test('a detached ID serves what was open; every name gets a fresh one', (t) => {
  const { root, tool, tool2 } = tree();
  const table = new NodeTable(root);
  const k = table.lookedUp(tool, attr(3n, 2));
  table.lookedUp(tool2, attr(3n, 2));
  table.detach(k);
  t.is(table.get(k.nodeid), k, 'still answers for open files');
  const fresh = table.lookedUp(tool2, attr(3n, 2));
  t.not(fresh.nodeid, k.nodeid);
  t.is(table.lookedUp(tool, attr(3n, 2)), fresh);
});
