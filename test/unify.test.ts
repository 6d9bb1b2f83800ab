// `vefs unify` on real trees in scratch directories: what gets linked, what
// never does, the immutable flag, templates, dry run, the index's reruns,
// exclusions, --ignore-mtime and --revert.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import xxhash from 'xxhash-addon';
import { native, toBytes, C } from '../native/index.js';
import { buildBusyboxTemplate } from '../src/runtime/template.js';
import { unifyDemoStep } from '../src/unify/demo.js';
import { withMutable } from '../src/unify/section.js';
import { digestTree } from '../src/vefs/digest.js';
import { withScratch } from './helpers/mounts.js';
import {
  bytesOf, copyTree, filesBelow, flagProblems, inodeOf, lsattrImmutable, manifest, manifestDiff, nlinkOf, unifyJson, writeTree,
} from './helpers/unify.js';

/** A template of a few files and n VEs copied from it (times, modes and xattrs kept). */
function corpus(t: ExecutionContext, n: number) {
  const s = withScratch(t, 'vefs-unify');
  const tpl = path.join(s.base, 'template');
  writeTree(tpl, {
    'usr/bin/tool': bytesOf(70_000, 1),
    'usr/lib/libx.so': bytesOf(300_000, 2),
    'usr/lib/liby.so': bytesOf(5_000, 3),
    'usr/share/doc/README': 'read me\n',
    'usr/share/empty': '',
    'etc/config': 'setting=1\n',
  });
  fs.chmodSync(path.join(tpl, 'usr/bin/tool'), 0o755);
  const ves = Array.from({ length: n }, (_, i) => {
    const ve = path.join(s.base, `ve${i + 1}`);
    copyTree(tpl, ve);
    return ve;
  });
  return { s, tpl, ves, state: s.stateDir };
}

const at = (root: string, rel: string): string => path.join(root, rel);

test('links identical files to the template inode and marks them immutable (lsattr)', async (t) => {
  const { tpl, ves, state } = corpus(t, 3);
  const before = await digestTree(tpl);
  const tplInodes = new Map(filesBelow(tpl).map((f) => [f, inodeOf(at(tpl, f))]));
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  for (const f of ['usr/bin/tool', 'usr/lib/libx.so', 'usr/lib/liby.so', 'usr/share/doc/README']) {
    for (const ve of ves) t.is(inodeOf(at(ve, f)), tplInodes.get(f)!, `${ve}/${f} is the template's inode`);
    t.is(nlinkOf(at(tpl, f)), 4);
    t.true(lsattrImmutable(at(tpl, f)), `${f} shows i in lsattr`);
    t.true(lsattrImmutable(at(ves[0]!, f)));
  }
  t.is(inodeOf(at(tpl, 'usr/share/empty')) === inodeOf(at(ves[0]!, 'usr/share/empty')), false, 'empty files stay apart');
  t.not(inodeOf(at(ves[0]!, 'etc/config')), inodeOf(at(tpl, 'etc/config')), '/etc is excluded by default');
  t.false(lsattrImmutable(at(ves[0]!, 'etc/config')));
  t.is(report.linksMade, 12);
  t.is(report.inodesReclaimed, 12);
  t.is(report.bytesReclaimed, 3 * (70_000 + 300_000 + 5_000 + 8));
  t.is(report.groups, 4);
  for (const ve of ves) t.deepEqual(fs.readdirSync(at(ve, 'usr/lib')).sort(), ['libx.so', 'liby.so'], 'no temporary names left');
  t.deepEqual(flagProblems(ves.map((v) => at(v, 'usr'))), []);
  // The template's content is untouched; only its link counts and ctimes moved (digestTree leaves ctime out).
  t.is(await digestTree(tpl), before);
});

test('without a template, the inode with most names is kept; a name that already shares it is counted, not touched', async (t) => {
  const { ves, state } = corpus(t, 3);
  fs.linkSync(at(ves[1]!, 'usr/lib/liby.so'), at(ves[1]!, 'usr/lib/liby-alias.so'));
  const keep = inodeOf(at(ves[1]!, 'usr/lib/liby.so'));
  const { report } = await unifyJson(state, ...ves);
  for (const ve of ves) t.is(inodeOf(at(ve, 'usr/lib/liby.so')), keep);
  t.is(inodeOf(at(ves[1]!, 'usr/lib/liby-alias.so')), keep);
  t.is(report.alreadyLinked, 1);
});

test('a run over a new VE and one unified VE links the new files to the inodes earlier runs made', async (t) => {
  const { ves, state } = corpus(t, 3);
  await unifyJson(state, ves[0]!, ves[1]!);
  const kept = inodeOf(at(ves[0]!, 'usr/lib/libx.so'));
  t.is(inodeOf(at(ves[1]!, 'usr/lib/libx.so')), kept);
  // The unified inodes' names in ves[1] are outside this run: they are kept, never relinked.
  const { report } = await unifyJson(state, ves[2]!, ves[0]!);
  for (const f of ['usr/bin/tool', 'usr/lib/libx.so', 'usr/lib/liby.so', 'usr/share/doc/README']) {
    t.is(inodeOf(at(ves[2]!, f)), inodeOf(at(ves[1]!, f)), f);
    t.is(nlinkOf(at(ves[2]!, f)), 3, f);
    t.true(lsattrImmutable(at(ves[2]!, f)), f);
  }
  t.is(report.linksMade, 4);
  t.is(report.skipped['names-elsewhere'] ?? 0, 0);
  t.deepEqual(flagProblems([at(ves[2]!, 'usr')]), []);
});

test('an inode unified before that lost its flag is not kept while it has names elsewhere: the flag would reach them', async (t) => {
  const { ves, state } = corpus(t, 3);
  await unifyJson(state, ves[0]!, ves[1]!);
  // By hand, behind the index's back: its directory did not change, so the walk still takes it for unified.
  execFileSync('chattr', ['-i', at(ves[0]!, 'usr/lib/liby.so')]);
  const { report } = await unifyJson(state, ves[2]!, ves[0]!);
  t.not(inodeOf(at(ves[2]!, 'usr/lib/liby.so')), inodeOf(at(ves[0]!, 'usr/lib/liby.so')));
  t.false(lsattrImmutable(at(ves[1]!, 'usr/lib/liby.so')), 'the name outside the run stays writable');
  t.is(nlinkOf(at(ves[1]!, 'usr/lib/liby.so')), 2);
  t.is(report.skipped['names-elsewhere'], 1);
  t.is(inodeOf(at(ves[2]!, 'usr/lib/libx.so')), inodeOf(at(ves[1]!, 'usr/lib/libx.so')), 'the others are linked');
});

test('a VE inode with several names is linked under all of them, also when a name comes later in the walk', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  // Names in different directories, so that the walk indexes them far apart.
  fs.mkdirSync(at(ves[1]!, 'opt/z'), { recursive: true });
  fs.linkSync(at(ves[1]!, 'usr/lib/libx.so'), at(ves[1]!, 'opt/z/libx-copy.so'));
  fs.linkSync(at(ves[1]!, 'usr/lib/libx.so'), at(ves[1]!, 'usr/lib/libx-alias.so'));
  const keep = inodeOf(at(tpl, 'usr/lib/libx.so'));
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  for (const f of ['usr/lib/libx.so', 'usr/lib/libx-alias.so', 'opt/z/libx-copy.so']) t.is(inodeOf(at(ves[1]!, f)), keep, f);
  t.is(nlinkOf(at(tpl, 'usr/lib/libx.so')), 5);
  t.is(report.skipped['names-elsewhere'] ?? 0, 0);
});

test('a dry run reads and decides but changes no file, flag or index', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  const roots = [tpl, ...ves];
  const before = manifest(roots);
  const inodes = roots.flatMap((r) => filesBelow(r).map((f) => inodeOf(at(r, f))));
  const { report } = await unifyJson(state, '--dry-run', '--template', tpl, ...ves);
  t.true(report.dryRun);
  t.is(report.linksMade, 8);
  t.is(report.inodesReclaimed, 8);
  t.true(report.bytesRead > 0);
  t.deepEqual(manifestDiff(before, manifest(roots)), []);
  t.deepEqual(roots.flatMap((r) => filesBelow(r).map((f) => inodeOf(at(r, f)))), inodes);
  t.false(lsattrImmutable(at(tpl, 'usr/bin/tool')));
  t.false(fs.existsSync(path.join(state, 'unify.db')), 'no index was written');
  // With an index already there, a dry run leaves it as it was.
  await unifyJson(state, '--template', tpl, ves[0]!);
  const db = fs.readFileSync(path.join(state, 'unify.db'));
  await unifyJson(state, '--dry-run', '--template', tpl, ...ves);
  t.true(fs.readFileSync(path.join(state, 'unify.db')).equals(db));
});

test('a rerun with nothing changed reads no content; a new VE costs only its own files', async (t) => {
  const { tpl, ves, state } = corpus(t, 3);
  const first = await unifyJson(state, '--template', tpl, ves[0]!, ves[1]!);
  t.true(first.report.bytesRead > 0);
  const rerun = await unifyJson(state, '--template', tpl, ves[0]!, ves[1]!);
  t.is(rerun.report.bytesRead, 0);
  t.is(rerun.report.filesHashed, 0);
  t.is(rerun.report.linksMade, 0);
  t.is(rerun.report.alreadyLinked, 8);
  const added = await unifyJson(state, '--template', tpl, ...ves);
  t.is(added.report.filesHashed, 4, 'the new VE\'s four non-empty files outside /etc');
  t.is(added.report.linksMade, 4);
  // Hashed once, then each compared with its master: the new VE's bytes, twice, plus the masters' once.
  const veBytes = 70_000 + 300_000 + 5_000 + 8;
  t.is(added.report.bytesRead, 3 * veBytes);
  t.is((await unifyJson(state, '--template', tpl, ...ves)).report.bytesRead, 0);
});

test.serial('a rerun stats only what may have changed: sealed names in unchanged directories are trusted, the rest is looked at', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  await unifyJson(state, '--template', tpl, ...ves);
  // 4 unified inodes with 3 names each; etc/config is excluded, usr/share/empty is empty.
  const rerun = await unifyJson(state, '--template', tpl, ...ves);
  t.is(rerun.report.filesTrusted, 12, 'every unified name, without a statx');
  t.is(rerun.report.filesScanned, 12);
  // A file the walk does not trust (one name, no flag) changes in place: its directory does not move, it is seen anyway.
  const own = at(ves[0]!, 'usr/share/doc/own');
  fs.writeFileSync(own, bytesOf(9_000, 7));
  const withOwn = await unifyJson(state, '--template', tpl, ...ves);
  t.is(withOwn.report.filesHashed, 0, 'a size nobody else has is never read');
  const when = new Date('2026-01-02T03:04:05Z');
  fs.writeFileSync(at(ves[1]!, 'usr/share/doc/own'), bytesOf(9_000, 8));
  fs.utimesSync(at(ves[1]!, 'usr/share/doc/own'), when, when);
  await unifyJson(state, '--template', tpl, ...ves);
  fs.writeFileSync(own, bytesOf(9_000, 8));
  fs.utimesSync(own, when, when);
  const rewritten = await unifyJson(state, '--template', tpl, ...ves);
  t.is(rewritten.report.linksMade, 1, 'the rewritten file now equals the other VE\'s and is linked');
  t.is(inodeOf(own), inodeOf(at(ves[1]!, 'usr/share/doc/own')));
  // A name replaced in a directory (what a VE's copy-on-write does) moves the directory: looked at again.
  const lib = at(ves[1]!, 'usr/lib/liby.so');
  process.env.VEFS_STATE_DIR = state;
  fs.writeFileSync(`${lib}.new`, bytesOf(5_000, 3));
  execFileSync('touch', ['-r', lib, `${lib}.new`]);
  await withMutable([toBytes(lib)], () => fs.renameSync(`${lib}.new`, lib));
  const relinked = await unifyJson(state, '--template', tpl, ...ves);
  t.is(relinked.report.linksMade, 1, 'the VE\'s new copy is equal again, and linked again');
  t.is(inodeOf(lib), inodeOf(at(tpl, 'usr/lib/liby.so')));
  // Someone clears the flag by hand and rewrites a unified file in place; a VE gets a copy of the new bytes.
  // Only --rescan looks at the rewritten inode again, and only then do the two meet.
  const tool = at(tpl, 'usr/bin/tool');
  execFileSync('chattr', ['-i', tool]);
  fs.writeFileSync(tool, bytesOf(70_000, 42));
  const copy = at(ves[0]!, 'usr/share/doc/tool2');
  fs.writeFileSync(copy, bytesOf(70_000, 42));
  fs.chmodSync(copy, 0o755);
  execFileSync('touch', ['-r', tool, copy]);
  const trusting = await unifyJson(state, '--template', tpl, ...ves);
  t.is(trusting.report.linksMade, 0, 'the index still holds the old version of the rewritten inode');
  const rescan = await unifyJson(state, '--rescan', '--template', tpl, ...ves);
  t.is(rescan.report.filesTrusted, 0);
  t.is(rescan.report.linksMade, 1);
  t.is(inodeOf(copy), inodeOf(tool));
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

test('a rerun passes directories of sealed files without opening them, and still sees what changes in them', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  await unifyJson(state, '--template', tpl, ...ves);
  // '/', usr, usr/bin, usr/lib and usr/share/doc hold unified files and directories only: passed in each of the 3
  // trees. usr/share holds an empty file (not indexed, and it may grow in place); etc is excluded.
  const rerun = await unifyJson(state, '--template', tpl, ...ves);
  t.is(rerun.report.dirsPassed, 15);
  t.is(rerun.report.filesTrusted, 12);
  t.is(rerun.report.filesScanned, 12);
  // The empty file grows in place, the same in every tree: usr/share's stamp holds, yet it is seen and linked.
  const when = new Date('2026-02-03T04:05:06Z');
  for (const root of [tpl, ...ves]) {
    fs.writeFileSync(at(root, 'usr/share/empty'), 'now with bytes\n', { flag: 'r+' });
    fs.utimesSync(at(root, 'usr/share/empty'), when, when);
  }
  const grown = await unifyJson(state, '--template', tpl, ...ves);
  t.is(grown.report.linksMade, 2);
  t.is(inodeOf(at(ves[1]!, 'usr/share/empty')), inodeOf(at(tpl, 'usr/share/empty')));
  // A new file in a new directory below a passed one: the parent's stamp moved, so it is listed and the file found.
  fs.mkdirSync(at(ves[0]!, 'usr/lib/sub'));
  fs.copyFileSync(at(tpl, 'usr/lib/liby.so'), at(ves[0]!, 'usr/lib/sub/liby.so'));
  execFileSync('touch', ['-r', at(tpl, 'usr/lib/liby.so'), at(ves[0]!, 'usr/lib/sub/liby.so')]);
  const added = await unifyJson(state, '--template', tpl, ...ves);
  t.is(added.report.linksMade, 1);
  t.is(inodeOf(at(ves[0]!, 'usr/lib/sub/liby.so')), inodeOf(at(tpl, 'usr/lib/liby.so')));
  t.is(added.report.dirsPassed, 17, 'usr/share is passed now (its file is unified), ve1/usr/lib was listed');
  // Other exclusions or another minimum size: every directory is opened once, then passed again (README and
  // usr/share/empty are below the minimum now, but sealed: they cannot grow).
  const other = await unifyJson(state, '--min-size', '100', '--template', tpl, ...ves);
  t.is(other.report.dirsPassed, 0);
  t.is((await unifyJson(state, '--min-size', '100', '--template', tpl, ...ves)).report.dirsPassed, 19);
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

// Serial: it sets VEFS_STATE_DIR for an in-process section.
test.serial('an inode whose other names all went is looked at again, though its directory did not change', async (t) => {
  const { tpl, ves, state } = corpus(t, 1);
  await unifyJson(state, '--template', tpl, ...ves);
  // The VE's copy-on-write, as VEFS does it, takes the template's inode's last other name: the section drops its flag.
  const lib = at(ves[0]!, 'usr/lib/liby.so');
  process.env.VEFS_STATE_DIR = state;
  fs.writeFileSync(`${lib}.new`, bytesOf(5_000, 99));
  await withMutable([toBytes(lib)], () => fs.renameSync(`${lib}.new`, lib));
  const own = at(tpl, 'usr/lib/liby.so');
  t.false(lsattrImmutable(own), 'the template\'s file is its own again, and writable');
  // Its content changes in place (its directory's stamp holds), and a VE gets a file equal to the new content.
  const when = new Date('2026-03-04T05:06:07Z');
  fs.writeFileSync(own, bytesOf(6_000, 5));
  fs.utimesSync(own, when, when);
  const copy = at(ves[0]!, 'usr/lib/libz.so');
  fs.writeFileSync(copy, bytesOf(6_000, 5));
  fs.utimesSync(copy, when, when);
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  t.is(report.linksMade, 1, 'the rewritten template file was seen, and the VE\'s equal file linked to it');
  t.is(inodeOf(copy), inodeOf(own));
  t.false(fs.existsSync(path.join(state, 'unify-unsealed')), 'the run took the list of unsealed inodes');
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

// Serial: it sets VEFS_STATE_DIR for an in-process section.
test.serial('a changed file is hashed again on the next run and stays apart', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  await unifyJson(state, '--template', tpl, ...ves);
  // The VE's copy-on-write, as VEFS does it: a new inode renamed over the name inside the mutable section.
  const f = at(ves[0]!, 'usr/lib/liby.so');
  fs.writeFileSync(`${f}.new`, bytesOf(5_000, 99));
  process.env.VEFS_STATE_DIR = state;
  await withMutable([toBytes(f)], () => fs.renameSync(`${f}.new`, f));
  t.true(lsattrImmutable(at(tpl, 'usr/lib/liby.so')), 'the template and the other VE still share it');
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  t.is(report.filesHashed, 1);
  t.is(report.linksMade, 0);
  t.is(nlinkOf(f), 1);
  t.false(lsattrImmutable(f));
});

test('differences a VE could see keep files apart: xattr, mode, owner, group, mtime, content', async (t) => {
  const { tpl, ves, state } = corpus(t, 6);
  const f = 'usr/lib/liby.so';
  native.lsetxattr(toBytes(at(ves[0]!, f)), 'user.mark', Buffer.from('x'), 0);
  fs.chmodSync(at(ves[1]!, f), 0o600);
  fs.chownSync(at(ves[2]!, f), 1000, 0);
  fs.chownSync(at(ves[3]!, f), 0, 1000);
  fs.utimesSync(at(ves[4]!, f), new Date(), new Date(Date.now() - 86_400_000));
  const other = bytesOf(5_000, 3);
  other[4_999] ^= 1;
  fs.writeFileSync(at(ves[5]!, f), other);
  execFileSync('touch', ['-r', at(tpl, f), at(ves[5]!, f)]);
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  for (const ve of ves) t.not(inodeOf(at(ve, f)), inodeOf(at(tpl, f)), `${ve} keeps its own ${f}`);
  for (const ve of ves) t.is(inodeOf(at(ve, 'usr/bin/tool')), inodeOf(at(tpl, 'usr/bin/tool')));
  t.is(nlinkOf(at(tpl, f)), 1);
  t.false(lsattrImmutable(at(tpl, f)));
  t.is(report.linksMade, 6 * 3);
});

test('a hash collision is caught by the byte comparison', async (t) => {
  // Same size and metadata, different bytes, given the same hash by hand in the index.
  const { tpl, ves, state } = corpus(t, 1);
  const f = 'usr/lib/liby.so';
  const other = bytesOf(5_000, 3);
  other[0] ^= 1;
  fs.writeFileSync(at(ves[0]!, f), other);
  execFileSync('touch', ['-r', at(tpl, f), at(ves[0]!, f)]);
  await unifyJson(state, '--template', tpl, ...ves);
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(path.join(state, 'unify.db'));
  const hash = db.prepare(`SELECT i.hash FROM inodes i JOIN files f ON f.dev = i.dev AND f.ino = i.ino
    WHERE f.name = 'liby.so' AND i.hash IS NOT NULL LIMIT 1`).pluck().get();
  db.prepare(`UPDATE inodes SET hash = ? WHERE (dev, ino) IN (SELECT dev, ino FROM files WHERE name = 'liby.so')`).run(hash);
  // As if the colliding hashes had just been computed: the run that hashes files always groups them.
  db.prepare(`DELETE FROM meta WHERE key = 'settled'`).run();
  db.close();
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  t.is(report.skipped['content-differs'], 1);
  t.not(inodeOf(at(ves[0]!, f)), inodeOf(at(tpl, f)));
  t.true(fs.readFileSync(at(ves[0]!, f)).equals(other));
});

test('--ignore-mtime links files that differ only in mtime; --revert gives each its own mtime back', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  const f = at(ves[0]!, 'usr/lib/liby.so');
  const old = new Date('2001-02-03T04:05:06Z');
  fs.utimesSync(f, old, old);
  t.is((await unifyJson(state, '--template', tpl, ...ves)).report.linksMade, 7);
  t.is(nlinkOf(f), 1);
  t.is((await unifyJson(state, '--ignore-mtime', '--template', tpl, ...ves)).report.linksMade, 1);
  t.is(inodeOf(f), inodeOf(at(tpl, 'usr/lib/liby.so')));
  await unifyJson(state, '--revert', '--template', tpl, ...ves);
  t.is(fs.statSync(f).mtime.getTime(), old.getTime());
  t.is(nlinkOf(f), 1);
});

test('--revert gives every path its own writable copy with its metadata, and leaves no flag', async (t) => {
  const { tpl, ves, state } = corpus(t, 3);
  const roots = [tpl, ...ves];
  const f = 'usr/bin/tool';
  for (const r of roots) native.lsetxattr(toBytes(at(r, f)), 'user.tag', Buffer.from('same'), 0);
  const before = manifest(roots);
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  t.is(report.linksMade, 12);
  t.deepEqual(manifestDiff(before, manifest(roots)), [], 'unify changed nothing a VE sees');
  const reverted = await unifyJson(state, '--revert', '--template', tpl, ...ves);
  t.is(reverted.report.reverted?.paths, 12);
  t.is(reverted.report.reverted?.inodes, 4);
  t.deepEqual(manifestDiff(before, manifest(roots)), []);
  for (const r of roots) {
    for (const file of filesBelow(r)) {
      t.is(nlinkOf(at(r, file)), 1, `${r}/${file} has its own inode`);
      t.false(lsattrImmutable(at(r, file)));
    }
  }
  fs.appendFileSync(at(ves[0]!, f), 'writable again');
  t.is(fs.readFileSync(at(tpl, f)).length, 70_000, 'a write to a VE copy leaves the template alone');
  const again = await unifyJson(state, '--revert', '--template', tpl, ...ves);
  t.is(again.report.reverted?.paths, 0, 'revert is idempotent');
});

test('exclusions: --exclude adds to the defaults, --no-default-excludes drops them', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  await unifyJson(state, '--template', tpl, '--exclude', '/usr/lib', '--exclude', 'README', ...ves);
  t.is(nlinkOf(at(tpl, 'usr/lib/libx.so')), 1);
  t.is(nlinkOf(at(tpl, 'usr/share/doc/README')), 1);
  t.is(nlinkOf(at(tpl, 'usr/bin/tool')), 3);
  t.is(nlinkOf(at(tpl, 'etc/config')), 1);
  await unifyJson(state, '--template', tpl, '--no-default-excludes', '--min-size', '10', ...ves);
  t.is(nlinkOf(at(tpl, 'etc/config')), 3, '/etc too now');
  t.is(nlinkOf(at(tpl, 'usr/share/doc/README')), 1, 'below --min-size');
});

test('an inode with a name outside the ROOTs is left alone; metacopy files never link', async (t) => {
  const { s, tpl, ves, state } = corpus(t, 2);
  fs.linkSync(at(ves[0]!, 'usr/lib/libx.so'), path.join(s.base, 'outside'));
  native.lsetxattr(toBytes(at(ves[0]!, 'usr/lib/liby.so')), 'trusted.overlay.metacopy', Buffer.alloc(0), 0);
  native.lsetxattr(toBytes(at(ves[1]!, 'usr/lib/liby.so')), 'trusted.overlay.metacopy', Buffer.alloc(0), 0);
  const { report } = await unifyJson(state, '--template', tpl, ...ves);
  t.not(inodeOf(at(ves[0]!, 'usr/lib/libx.so')), inodeOf(at(tpl, 'usr/lib/libx.so')));
  t.is(inodeOf(at(ves[1]!, 'usr/lib/libx.so')), inodeOf(at(tpl, 'usr/lib/libx.so')));
  t.is(report.skipped['names-elsewhere'], 1);
  t.not(inodeOf(at(ves[0]!, 'usr/lib/liby.so')), inodeOf(at(ves[1]!, 'usr/lib/liby.so')));
});

test('names that are not UTF-8 are walked and linked; directories keep their times', async (t) => {
  const { tpl, ves, state } = corpus(t, 2);
  const name = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]); // "f\xff\xfe.bin"
  for (const r of [tpl, ...ves]) fs.writeFileSync(Buffer.concat([Buffer.from(`${r}/usr/lib/`), name]), 'odd name, same bytes');
  const then = new Date('2020-01-01T00:00:00Z');
  for (const r of [tpl, ...ves]) {
    fs.utimesSync(Buffer.concat([Buffer.from(`${r}/usr/lib/`), name]), then, then);
    fs.utimesSync(at(r, 'usr/lib'), then, then);
  }
  const dirMtime = fs.statSync(at(ves[0]!, 'usr/lib')).mtimeMs;
  await unifyJson(state, '--template', tpl, ...ves);
  const odd = (r: string): bigint => fs.lstatSync(Buffer.concat([Buffer.from(`${r}/usr/lib/`), name]), { bigint: true }).ino;
  t.is(odd(ves[0]!), odd(tpl));
  t.is(fs.statSync(at(ves[0]!, 'usr/lib')).mtimeMs, dirMtime, 'replacing names left the directory\'s mtime as it was');
});

test.serial('unifyDemoStep (for vefs demo) unifies, shows and reverts three VE trees of a busybox template', async (t) => {
  const s = withScratch(t, 'vefs-unify-demo');
  process.env.VEFS_STATE_DIR = s.stateDir;
  const tpl = path.join(s.base, 'template');
  await buildBusyboxTemplate(tpl);
  const lines: string[] = [];
  await unifyDemoStep(tpl, s.base, (l) => lines.push(l));
  t.regex(lines.join('\n'), /5 links made/);
  t.regex(lines.join('\n'), /lsattr -*i/);
  t.regex(lines.join('\n'), /--revert: 5 paths/);
  t.deepEqual(flagProblems([tpl, path.join(s.base, 'unify')]), []);
  fs.rmSync(path.join(s.base, 'unify'), { recursive: true });
});

test('hashFiles digests as xxhash-addon does, and refuses a file that is not the version the walk saw', async (t) => {
  const s = withScratch(t, 'vefs-unify-hash');
  const root = path.join(s.base, 'root');
  const sizes = [1, 4096, 300_000, (1 << 20) + 3];
  writeTree(root, Object.fromEntries(sizes.map((n, i) => [`d/f${i}`, bytesOf(n, i + 1)])));
  fs.symlinkSync('f0', path.join(root, 'd/link'));
  const rootFd = native.openat(C.AT_FDCWD, toBytes(root), C.O_PATH | C.O_DIRECTORY, 0);
  t.teardown(() => native.close(rootFd));
  const names = [...sizes.map((_, i) => `d/f${i}`), 'd/f0', 'd/link'];
  const sts = names.map((n) => native.fstatat(rootFd, n, 0));
  const ids = new BigUint64Array(sts.flatMap((st) => [st.dev, st.ino]));
  const versions = new Float64Array(sts.flatMap((st, i) => [st.size, st.mtimeSec, st.mtimeNsec + (i === sizes.length ? 1 : 0)]));
  const r = await native.hashFiles(new Int32Array(names.length).fill(rootFd), names, ids, versions);
  sizes.forEach((_, i) => {
    const h = new xxhash.XXHash128(Buffer.alloc(4));
    h.update(bytesOf(sizes[i]!, i + 1));
    t.deepEqual(r.hashes[i], h.digest(), `f${i}`);
  });
  t.is(r.hashes[sizes.length], null, 'another mtime than the walk saw');
  t.is(r.hashes[sizes.length + 1], null, 'a symlink is not followed');
  t.is(r.bytesRead, sizes.reduce((a, b) => a + b, 0));
});
