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

test.serial('while a unify job runs, its deferred journal lines are left to it; once it is gone they are repaired', async (t) => {
  const { s, tpl, ves } = unified(t, 2);
  // A unify killed inside its first section leaves its (deferred) line, flags not set again.
  await runKilledInSection(s.stateDir, ['--template', tpl, ...ves]);
  const a = path.join(tpl, 'bin/a');
  t.false(immutable(a));
  const left = journal(s.stateDir);
  t.true(left.includes('"deferred":true'));
  // A job holds the job lock (its own open file description, as another process would have): deferred lines may be its own.
  const job = native.openat(C.AT_FDCWD, path.join(s.stateDir, 'unify.lock'), C.O_RDWR | C.O_CREAT, 0o600);
  let held = true;
  t.teardown(() => { if (held) native.close(job); });
  native.flockSync(job, C.LOCK_EX | C.LOCK_NB);
  // Someone else's section meanwhile (what the VEFS server does on a copy-on-write).
  await withMutable([toBytes(path.join(ves[0]!, 'bin/b'))], () => undefined);
  t.is(journal(s.stateDir), left, 'the job\'s lines stay as they are');
  t.false(immutable(a), 'and are not acted on');
  native.close(job);
  held = false;
  repairJournal();
  t.true(immutable(a));
  t.is(journal(s.stateDir), '');
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

const TRACED = /unify-section\.journal|FS_IOC_SETFLAGS|fsync\(|syncfs\(/;

/** The calls a command makes on the journal and on inode flags, in order, as strace -y shows them. */
function traced(stateDir: string, command: string[]): string[] {
  const out = path.join(stateDir, 'strace.txt');
  execFileSync('strace', ['-f', '-y', '-o', out, '-e', 'trace=pwrite64,fdatasync,fsync,syncfs,ftruncate,ioctl', ...command],
    { env: { ...process.env, VEFS_STATE_DIR: stateDir } });
  return fs.readFileSync(out, 'utf8').split('\n').filter((l) => TRACED.test(l));
}

const isJournal = (stateDir: string, l: string): boolean => l.includes(`<${path.join(stateDir, 'unify-section.journal')}>`);
const clearsFlag = (l: string): boolean => /FS_IOC_SETFLAGS, \[(?![^\]]*FS_IMMUTABLE_FL)/.test(l) && !l.includes('(deleted)');
const setsFlag = (l: string): boolean => /FS_IOC_SETFLAGS, \[[^\]]*FS_IMMUTABLE_FL/.test(l) && !l.includes('(deleted)');

/** The journal is written and fdatasynced before the first flag is cleared; answers where that flag is cleared. */
function journaledFirst(t: ExecutionContext, stateDir: string, calls: string[]): number {
  const cleared = calls.findIndex(clearsFlag);
  t.true(cleared >= 0, calls.join('\n'));
  const written = calls.findIndex((l) => l.includes('pwrite64(') && isJournal(stateDir, l));
  const synced = calls.findIndex((l, i) => i > written && l.includes('fdatasync(') && isJournal(stateDir, l));
  t.true(written >= 0 && synced > written && synced < cleared, 'the journal is written and fdatasynced before the first flag is cleared');
  return cleared;
}

test.serial('a power loss cannot lose a flag in a unify run: journal on disk before a flag is cleared, flags (syncfs) before it is emptied', async (t) => {
  const { s, tpl, ves } = unified(t, 2);
  await unifyJson(s.stateDir, '--template', tpl, ves[0]!);
  // Adding a VE clears the template inodes' flags, links, and sets them again.
  const calls = traced(s.stateDir, [process.execPath, VEFS_CLI, 'unify', '--quiet', '--template', tpl, ...ves]);
  const cleared = journaledFirst(t, s.stateDir, calls);
  const emptied = calls.findIndex((l, i) => i > cleared && l.includes('ftruncate(') && isJournal(s.stateDir, l) && / 0\) = 0$/.test(l));
  t.true(emptied > cleared, 'the journal is emptied once, at the end');
  t.false(calls.slice(cleared, emptied).some((l) => l.includes('ftruncate(') && isJournal(s.stateDir, l)), 'sections leave their lines');
  const lastSet = Math.max(...calls.slice(0, emptied).map((l, i) => (setsFlag(l) ? i : -1)));
  t.true(lastSet > cleared);
  t.true(calls.slice(lastSet, emptied).some((l) => l.includes('syncfs(')), 'a syncfs after the last flag set, before the journal is emptied');
  t.deepEqual(flagProblems([tpl, ...ves]), []);
});

test.serial('a power loss cannot lose a flag in a single section: each flag it sets is fsynced before its line goes', async (t) => {
  const { s, tpl, ves } = unified(t, 1);
  await unifyJson(s.stateDir, '--template', tpl, ...ves);
  // What the VEFS server does for a VE's unlink of a unified file, in a process of its own.
  const name = path.join(ves[0]!, 'bin/a');
  const script = `import { withMutable } from ${JSON.stringify(new URL('../src/unify/section.js', import.meta.url).href)};
    import { renameSync } from 'node:fs';
    await withMutable([${JSON.stringify(name)}], () => renameSync(${JSON.stringify(name)}, ${JSON.stringify(`${name}.moved`)}));`;
  const calls = traced(s.stateDir, [process.execPath, '--input-type=module', '-e', script]);
  const cleared = journaledFirst(t, s.stateDir, calls);
  const cut = calls.findIndex((l, i) => i > cleared && l.includes('ftruncate(') && isJournal(s.stateDir, l));
  t.true(cut > cleared, 'the section removes its line');
  const sets = calls.slice(cleared, cut).filter(setsFlag);
  t.true(sets.length > 0);
  for (const set of sets) {
    const fd = /ioctl\((\d+<[^>]*>)/.exec(set)![1]!;
    t.true(calls.slice(calls.indexOf(set), cut).some((l) => l.includes(`fsync(${fd}`)), `the flag set on ${fd} is fsynced before the line goes`);
  }
  t.is(journal(s.stateDir), '');
  t.true(lsattrImmutable(`${name}.moved`));
});
