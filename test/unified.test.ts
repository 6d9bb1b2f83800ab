// Unified files seen from inside VEs on VEFS: a file that unify hard-linked
// across two VEs' private trees and marked immutable behaves, for each VE,
// like its own file. A change breaks the link (copy-on-write), rm and mv
// work, and the other VE's copy, its bytes and its flag stay as they were.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, lstatSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { native, C } from '../native/index.js';
import { withScratch, mountVefs } from './helpers/mounts.js';

const run = promisify(execFile);
const LIB = 'usr/lib/libshared.so';

const immutable = (p: string): boolean => {
  const fd = native.openat(C.AT_FDCWD, p, C.O_RDONLY, 0);
  try {
    return (native.getflags(fd) & C.FS_IMMUTABLE_FL) !== 0;
  } finally {
    native.close(fd);
  }
};

/** Two VEs whose private trees hold one file that unify has linked and flagged, as it leaves them. */
async function twoUnifiedVes(t: Parameters<typeof withScratch>[0]) {
  const s = withScratch(t, 'vefs-unified');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'README'), 'template\n');
  const privs = [s.dir('private/a'), s.dir('private/b')];
  for (const p of privs) {
    mkdirSync(join(p, 'usr/lib'), { recursive: true });
    writeFileSync(join(p, LIB), 'shared library bytes\n');
    chmodSync(join(p, LIB), 0o755);
  }
  rmSync(join(privs[1], LIB));
  native.linkat(C.AT_FDCWD, join(privs[0], LIB), C.AT_FDCWD, join(privs[1], LIB), 0);
  const fd = native.openat(C.AT_FDCWD, join(privs[0], LIB), C.O_RDONLY, 0);
  native.setflags(fd, native.getflags(fd) | C.FS_IMMUTABLE_FL);
  native.close(fd);
  const mnts = [];
  for (const [i, p] of privs.entries()) {
    const m = await mountVefs({ templates: [tpl], privateDir: p, workDir: join(s.base, `work${i}`),
      mountpoint: s.dir(`root/${i}`), stateDir: s.stateDir });
    t.teardown(() => m.unmount());
    mnts.push(m.mountpoint);
  }
  return { s, privs, mnts };
}

const checkOtherIntact = (t: { is(a: unknown, b: unknown, m?: string): void; true(v: boolean, m?: string): void }, priv: string, mnt: string) => {
  t.is(readFileSync(join(mnt, LIB), 'utf8'), 'shared library bytes\n', 'the other VE still reads the old bytes');
  t.true(immutable(join(priv, LIB)), 'the other VE\'s copy is still unified');
};

test('a write breaks the link: the writer gets its own copy, the other VE keeps the shared one', async (t) => {
  const { s, privs, mnts } = await twoUnifiedVes(t);
  const shared = statSync(join(privs[1], LIB)).ino;
  await run('sh', ['-c', `printf 'patched\\n' >> '${join(mnts[0], LIB)}'`]);
  t.is(readFileSync(join(mnts[0], LIB), 'utf8'), 'shared library bytes\npatched\n');
  const mine = lstatSync(join(privs[0], LIB));
  t.not(mine.ino, shared);
  t.is(mine.mode & 0o7777, 0o755, 'the copy keeps the metadata');
  t.false(immutable(join(privs[0], LIB)));
  t.is(statSync(join(privs[1], LIB)).nlink, 1);
  t.is(readFileSync(join(mnts[1], LIB), 'utf8'), 'shared library bytes\n');
  // Nothing is left to repair: the section's journal is empty between sections (section.ts).
  const journal = join(s.stateDir, 'unify-section.journal');
  t.true(!existsSync(journal) || statSync(journal).size === 0);
});

test('chmod and touch break the link too; the other VE sees no change', async (t) => {
  const { privs, mnts } = await twoUnifiedVes(t);
  await run('chmod', ['0700', join(mnts[0], LIB)]);
  t.is(statSync(join(mnts[0], LIB)).mode & 0o7777, 0o700);
  t.is(statSync(join(mnts[1], LIB)).mode & 0o7777, 0o755);
  t.is(readFileSync(join(mnts[0], LIB), 'utf8'), 'shared library bytes\n');
  await run('touch', ['-m', '-d', '@1000000000', join(mnts[1], LIB)]);
  t.is(statSync(join(mnts[1], LIB)).mtimeMs, 1_000_000_000_000);
  t.not(statSync(join(privs[0], LIB)).ino, statSync(join(privs[1], LIB)).ino);
});

test('rm and mv of a unified file work for the VE and touch nobody else', async (t) => {
  const { s, privs, mnts } = await twoUnifiedVes(t);
  // A third name keeps the inode shared after the first VE lets go of it.
  const spare = join(s.base, 'spare');
  const fd = native.openat(C.AT_FDCWD, join(privs[0], LIB), C.O_RDONLY, 0);
  native.setflags(fd, native.getflags(fd) & ~C.FS_IMMUTABLE_FL);
  native.linkat(C.AT_FDCWD, join(privs[0], LIB), C.AT_FDCWD, spare, 0);
  native.setflags(fd, native.getflags(fd) | C.FS_IMMUTABLE_FL);
  native.close(fd);
  t.teardown(() => run('chattr', ['-i', spare]).then(() => undefined, () => undefined));

  renameSync(join(mnts[0], LIB), join(mnts[0], 'usr/lib/renamed.so'));
  t.is(readFileSync(join(mnts[0], 'usr/lib/renamed.so'), 'utf8'), 'shared library bytes\n');
  t.false(existsSync(join(mnts[0], LIB)));
  t.true(immutable(join(privs[0], 'usr/lib/renamed.so')), 'a rename keeps the file unified');
  checkOtherIntact(t, privs[1], mnts[1]);

  rmSync(join(mnts[0], 'usr/lib/renamed.so'));
  t.false(existsSync(join(privs[0], 'usr/lib/renamed.so')));
  checkOtherIntact(t, privs[1], mnts[1]);
  t.is(statSync(join(privs[1], LIB)).nlink, 2);
});

test('the immutable flag is invisible inside the VE', async (t) => {
  const { mnts } = await twoUnifiedVes(t);
  const r = await run('lsattr', [join(mnts[0], LIB)]).then((o) => o.stdout + o.stderr, (e) => `${e.stdout}${e.stderr}`);
  t.notRegex(r, /^-*i-*\s/m, 'lsattr shows no immutable flag');
  // And the VE can write, as to any file of its own.
  writeFileSync(join(mnts[0], LIB), 'replaced\n');
  t.is(readFileSync(join(mnts[0], LIB), 'utf8'), 'replaced\n');
});
