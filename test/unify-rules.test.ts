// unify's pure decisions, as tables: the may-link predicate, the plan of
// which inode is kept (templates, most names, link limit, names elsewhere),
// and the exclusion patterns.
import test from 'ava';
import { C } from '../native/index.js';
import { DEFAULT_EXCLUDES, excluder } from '../src/unify/exclude.js';
import { planGroup, type PlanInode } from '../src/unify/plan.js';
import { mayLink, type FileFacts, type Refusal } from '../src/unify/predicate.js';
import { keepsFlag } from '../src/unify/section.js';

const base: FileFacts = {
  dev: 2049n, mode: C.S_IFREG | 0o644, uid: 0, gid: 0, size: 100, mtimeSec: 1_700_000_000, mtimeNsec: 5,
  xattrs: Buffer.alloc(0), metacopy: false,
};

const rows: [string, Partial<FileFacts>, Refusal | null, boolean?][] = [
  ['identical', {}, null],
  ['a symlink', { mode: C.S_IFLNK | 0o777 }, 'not-regular'],
  ['a FIFO', { mode: C.S_IFIFO | 0o644 }, 'not-regular'],
  ['empty', { size: 0 }, 'empty'],
  ['overlayfs metacopy', { metacopy: true }, 'metacopy'],
  ['another filesystem', { dev: 2050n }, 'other-filesystem'],
  ['another size', { size: 101 }, 'size'],
  ['another mode', { mode: C.S_IFREG | 0o600 }, 'mode'],
  ['set-uid', { mode: C.S_IFREG | 0o4644 }, 'mode'],
  ['another owner', { uid: 1000 }, 'owner'],
  ['another group', { gid: 1000 }, 'group'],
  ['another mtime', { mtimeSec: 1_700_000_001 }, 'mtime'],
  ['another mtime nanosecond', { mtimeNsec: 6 }, 'mtime'],
  ['another mtime, ignored', { mtimeNsec: 6 }, null, true],
  ['another xattr', { xattrs: Buffer.from('00112233445566778899aabbccddeeff', 'hex') }, 'xattrs'],
];

for (const [what, change, expected, ignoreMtime] of rows) {
  test(`predicate: ${what}`, (t) => {
    const other = { ...base, ...change };
    t.is(mayLink(base, other, { ignoreMtime: ignoreMtime ?? false }), expected);
    t.is(mayLink(other, base, { ignoreMtime: ignoreMtime ?? false }), expected, 'symmetric');
  });
}

let nextId = 1;
/** One inode of a group: [ino, nlink, names seen, template?, unified already?], with its first name as a page gives it. */
function inode(ino: number, nlink: number, count = nlink, template = false, sealed = false): PlanInode[] {
  const id = nextId++;
  return [{ ino: BigInt(ino), nlink, count, template, sealed,
    names: [{ id, dir: 1, root: template ? 1 : 2, rel: '/', name: `n${id}`, ino: BigInt(ino), nlink, mtimeSec: 0, mtimeNsec: 0, template }] }];
}

const shape = (inodes: PlanInode[], linkMax: number) => {
  const plan = planGroup(inodes, linkMax);
  return {
    links: plan.links.map((l) => ({ master: Number(l.master.ino), targets: l.targets.map((x) => Number(x.ino)) })),
    elsewhere: plan.elsewhere.map((x) => Number(x.ino)),
  };
};

test('plan: a template inode is kept, every other inode links to it', (t) => {
  t.deepEqual(shape([...inode(5, 1), ...inode(7, 1, 1, true), ...inode(6, 2)], 100),
    { links: [{ master: 7, targets: [6, 5] }], elsewhere: [] });
});

test('plan: without a template the inode with most names is kept', (t) => {
  t.deepEqual(shape([...inode(5, 1), ...inode(6, 3), ...inode(4, 1)], 100),
    { links: [{ master: 6, targets: [4, 5] }], elsewhere: [] });
});

test('plan: two template inodes stay apart; the second takes over when the first is full', (t) => {
  t.deepEqual(shape([...inode(1, 1, 1, true), ...inode(2, 1, 1, true), ...inode(3, 1), ...inode(4, 1)], 2),
    { links: [{ master: 1, targets: [3] }, { master: 2, targets: [4] }], elsewhere: [] });
});

test('plan: an inode with names the run did not see is left alone, and is no master', (t) => {
  t.deepEqual(shape([...inode(1, 5, 2), ...inode(2, 1), ...inode(3, 1)], 100),
    { links: [{ master: 2, targets: [3] }], elsewhere: [1] });
});

test('plan: a unified inode with names the run did not see is kept (a new VE beside its template), never a target', (t) => {
  t.deepEqual(shape([...inode(2, 1), ...inode(1, 8, 1, false, true), ...inode(3, 1)], 100),
    { links: [{ master: 1, targets: [2, 3] }], elsewhere: [] });
  t.deepEqual(shape([...inode(2, 9), ...inode(1, 8, 1, false, true)], 100),
    { links: [{ master: 1, targets: [2] }], elsewhere: [] }, 'kept before an inode with more names that can move');
  t.deepEqual(shape([...inode(1, 8, 1, false, true), ...inode(4, 3, 1, false, true), ...inode(2, 1)], 100),
    { links: [{ master: 1, targets: [2] }], elsewhere: [4] }, 'a second one stays apart');
  t.deepEqual(shape([...inode(1, 8, 1, false, true), ...inode(7, 1, 1, true), ...inode(2, 1)], 100),
    { links: [{ master: 7, targets: [2] }], elsewhere: [1] }, 'a template inode comes first');
});

test('plan: the link limit starts a new group with the next inode as master', (t) => {
  t.deepEqual(shape([...inode(1, 1, 1, true), ...inode(2, 1), ...inode(3, 1), ...inode(4, 1), ...inode(5, 1)], 3),
    { links: [{ master: 1, targets: [2, 3] }, { master: 4, targets: [5] }], elsewhere: [] });
});

test('plan: groups already split at the limit plan nothing on a rerun', (t) => {
  t.deepEqual(shape([...inode(1, 3, 3, true), ...inode(4, 2)], 3), { links: [], elsewhere: [] });
});

test('plan: nothing to do when every name shares one inode', (t) => {
  t.deepEqual(shape(inode(9, 4), 100), { links: [], elsewhere: [] });
});

const excludes: [string[], string, boolean][] = [
  [DEFAULT_EXCLUDES, '/etc', true],
  [DEFAULT_EXCLUDES, '/etc/passwd', true],
  [DEFAULT_EXCLUDES, '/var/lib/dpkg/status', true],
  [DEFAULT_EXCLUDES, '/usr/etc', false],
  [DEFAULT_EXCLUDES, '/etcetera', false],
  [DEFAULT_EXCLUDES, '/usr/bin/ls', false],
  [['*.pid'], '/run/x/a.pid', true],
  [['*.pid'], '/a.pidx', false],
  [['/usr/lib/*/cache'], '/usr/lib/foo/cache/x', true],
  [['/usr/lib/*/cache'], '/usr/lib/foo/bar/cache', false],
  [['/usr/**/cache'], '/usr/lib/foo/bar/cache', true],
  [['/opt/'], '/opt/x', true],
  [['/a.b'], '/aXb', false],
];

for (const [patterns, rel, excluded] of excludes) {
  test(`exclude: ${patterns.length > 3 ? 'defaults' : patterns.join(' ')} ${excluded ? 'excludes' : 'keeps'} ${rel}`, (t) => {
    t.is(excluder(patterns)(rel), excluded);
  });
}

test('section flag rule: shared inodes keep the flag, one that lost its sharing or never had it stays writable', (t) => {
  t.true(keepsFlag(true, 3, 3), 'flagged, names unchanged (a rename)');
  t.true(keepsFlag(true, 3, 2), 'flagged, still shared after an unlink');
  t.false(keepsFlag(true, 2, 1), 'flagged, its last other name went (copy-on-write)');
  t.true(keepsFlag(true, 1, 1), 'flagged with one name and untouched: someone else\'s immutable file');
  t.true(keepsFlag(false, 1, 2), 'gained a name: unify linked to it');
  t.false(keepsFlag(false, 2, 2), 'a VE\'s own hard link, untouched');
  t.false(keepsFlag(false, 3, 2), 'lost a name: a replaced target');
  t.false(keepsFlag(false, 1, 0), 'gone');
});
