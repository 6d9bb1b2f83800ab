// The mutable section shared by unify and the VEFS server (src/unify/section.ts):
// the flag rule around a change of names, the host-wide lock that a waiting
// caller waits for off the event loop, and the journal that repairs a
// holder killed inside the section. In-process tests set VEFS_STATE_DIR,
// so they run one at a time.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { native, C, toBytes } from '../native/index.js';
import { repairJournal, withMutable } from '../src/unify/section.js';
import { withScratch } from './helpers/mounts.js';
import { copyTree, flagProblems, immutable, lsattrImmutable, nlinkOf, unifyJson, writeTree } from './helpers/unify.js';
import { VEFS_CLI } from './helpers/mounts.js';

function unified(t: ExecutionContext, n = 2) {
  const s = withScratch(t, 'vefs-unify-section');
  process.env.VEFS_STATE_DIR = s.stateDir;
  const tpl = path.join(s.base, 'template');
  writeTree(tpl, { 'bin/a': 'shared bytes\n', 'bin/b': 'more shared bytes\n' });
  const ves = Array.from({ length: n }, (_, i) => {
    const ve = path.join(s.base, `ve${i + 1}`);
    copyTree(tpl, ve);
    return ve;
  });
  return { s, tpl, ves };
}

const journal = (stateDir: string): string => fs.readFileSync(path.join(stateDir, 'unify-section.journal'), 'utf8');

test.serial('outside the section a unified name cannot change; inside it can, and the flag comes back', async (t) => {
  const { s, tpl, ves } = unified(t, 2);
  await unifyJson(s.stateDir, '--template', tpl, ...ves);
  const name = path.join(ves[0]!, 'bin/a');
  t.true(lsattrImmutable(name));
  t.throws(() => fs.renameSync(name, `${name}.moved`), { code: 'EPERM' });
  await withMutable([toBytes(name)], () => fs.renameSync(name, `${name}.moved`));
  t.true(lsattrImmutable(`${name}.moved`), 'a rename keeps the inode unified');
  t.is(journal(s.stateDir), '', 'the journal is empty between sections');
  // Two names left of three: still shared, still immutable.
  await withMutable([toBytes(`${name}.moved`)], () => fs.unlinkSync(`${name}.moved`));
  t.true(lsattrImmutable(path.join(tpl, 'bin/a')));
  // The last other name goes: the template's file is private again and writable.
  await withMutable([toBytes(path.join(ves[1]!, 'bin/a'))], () => fs.unlinkSync(path.join(ves[1]!, 'bin/a')));
  t.is(nlinkOf(path.join(tpl, 'bin/a')), 1);
  t.false(lsattrImmutable(path.join(tpl, 'bin/a')));
});

test.serial('a section that throws still puts the flag back and rethrows', async (t) => {
  const { s, tpl, ves } = unified(t, 1);
  await unifyJson(s.stateDir, '--template', tpl, ...ves);
  const name = path.join(ves[0]!, 'bin/b');
  await t.throwsAsync(withMutable([toBytes(name)], () => { throw new Error('boom'); }), { message: 'boom' });
  t.true(immutable(name));
  t.is(journal(s.stateDir), '');
});

test.serial('a caller waiting for the host lock leaves the event loop free', async (t) => {
  const { s, tpl, ves } = unified(t, 1);
  await unifyJson(s.stateDir, '--template', tpl, ...ves);
  // Another process (util-linux flock) holds the section lock for a while.
  const holder = spawn('flock', [path.join(s.stateDir, 'unify-section.lock'), 'sleep', '0.6']);
  t.teardown(() => { holder.kill(); });
  await sleep(150);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const started = Date.now();
  await withMutable([toBytes(path.join(ves[0]!, 'bin/a'))], () => undefined);
  clearInterval(timer);
  t.true(Date.now() - started >= 300, 'it waited for the holder');
  t.true(ticks >= 10, `timers kept running while it waited (${ticks} ticks)`);
});

function runKilledInSection(stateDir: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [VEFS_CLI, 'unify', ...args], {
    env: { ...process.env, VEFS_STATE_DIR: stateDir, VEFS_TEST_SECTION_KILL: '1' }, stdio: 'ignore',
  });
  return new Promise((resolve) => child.on('exit', () => resolve(child)));
}

test.serial('a unify killed inside the section leaves a journal; repairJournal sets the flags again', async (t) => {
  const { s, tpl, ves } = unified(t, 2);
  const child = await runKilledInSection(s.stateDir, ['--template', tpl, ...ves]);
  t.is(child.signalCode, 'SIGKILL');
  const a = path.join(tpl, 'bin/a');
  t.is(nlinkOf(a), 3, 'the links were made');
  t.false(immutable(a), 'but the flag was not set yet');
  t.not(journal(s.stateDir), '');
  repairJournal();
  t.true(immutable(a));
  t.is(journal(s.stateDir), '');
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

test.serial('the next unify repairs a left journal by itself and finishes the job', async (t) => {
  const { s, tpl, ves } = unified(t, 3);
  await runKilledInSection(s.stateDir, ['--template', tpl, ...ves]);
  t.not(journal(s.stateDir), '');
  await unifyJson(s.stateDir, '--template', tpl, ...ves);
  t.deepEqual(flagProblems([tpl, ...ves]), []);
  for (const ve of ves) t.is(fs.statSync(path.join(ve, 'bin/b')).ino, fs.statSync(path.join(tpl, 'bin/b')).ino);
  t.is(journal(s.stateDir), '');
});

test.serial('repairJournal leaves a journal alone while a live holder has the lock', async (t) => {
  const { s, tpl, ves } = unified(t, 1);
  await runKilledInSection(s.stateDir, ['--template', tpl, ...ves]);
  const fd = native.openat(C.AT_FDCWD, path.join(s.stateDir, 'unify-section.lock'), C.O_RDWR, 0);
  t.teardown(() => native.close(fd));
  native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
  repairJournal();
  t.not(journal(s.stateDir), '');
  t.false(immutable(path.join(tpl, 'bin/a')));
  native.flockSync(fd, C.LOCK_UN);
  repairJournal();
  t.true(immutable(path.join(tpl, 'bin/a')));
});

/** The calls a `vefs unify` run makes on the journal and on inode flags, in order, as strace -y shows them. */
function tracedUnify(stateDir: string, args: string[]): string[] {
  const out = path.join(stateDir, 'strace.txt');
  execFileSync('strace', ['-f', '-y', '-o', out, '-e', 'trace=pwrite64,fdatasync,fsync,ftruncate,ioctl',
    process.execPath, VEFS_CLI, 'unify', '--quiet', ...args], { env: { ...process.env, VEFS_STATE_DIR: stateDir } });
  return fs.readFileSync(out, 'utf8').split('\n').filter((l) => /unify-section\.journal|FS_IOC_SETFLAGS|fsync\(/.test(l));
}

test.serial('a power loss cannot lose a flag: the journal is on disk before a flag is cleared, flags before it is emptied', async (t) => {
  const { s, tpl, ves } = unified(t, 2);
  await unifyJson(s.stateDir, '--template', tpl, ves[0]!);
  // Adding a VE clears the template inodes' flags, links, and sets them again.
  const calls = tracedUnify(s.stateDir, ['--template', tpl, ...ves]);
  const journalName = path.join(s.stateDir, 'unify-section.journal');
  const isJournal = (l: string): boolean => l.includes(`<${journalName}>`);
  const cleared = calls.findIndex((l) => /FS_IOC_SETFLAGS, \[(?![^\]]*FS_IMMUTABLE_FL)/.test(l) && !l.includes('(deleted)'));
  t.true(cleared >= 0, calls.join('\n'));
  const written = calls.findIndex((l) => l.includes('pwrite64(') && isJournal(l));
  const synced = calls.findIndex((l, i) => i > written && l.includes('fdatasync(') && isJournal(l));
  t.true(written >= 0 && synced > written && synced < cleared, 'the journal is written and fdatasynced before the first flag is cleared');
  const emptied = calls.findIndex((l, i) => i > cleared && l.includes('ftruncate(') && isJournal(l) && / 0\) = 0$/.test(l));
  t.true(emptied > cleared);
  const sets = calls.slice(cleared, emptied).filter((l) => /FS_IOC_SETFLAGS, \[[^\]]*FS_IMMUTABLE_FL/.test(l) && !l.includes('(deleted)'));
  t.true(sets.length > 0);
  for (const set of sets) {
    const fd = /ioctl\((\d+<[^>]*>)/.exec(set)![1]!;
    const after = calls.indexOf(set);
    t.true(calls.slice(after, emptied).some((l) => l.includes(`fsync(${fd}`)), `the flag set on ${fd} is fsynced before the journal is emptied`);
  }
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});
