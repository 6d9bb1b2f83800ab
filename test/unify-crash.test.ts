// kill -9 of `vefs unify` (and of --revert) at random moments, many times:
// after each kill every path still shows its full, correct content and
// metadata (checked against a manifest saved before), and the final runs
// complete with every shared inode immutable, no temporary name left, and,
// after --revert, every path private and writable again.
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { native, toBytes } from '../native/index.js';
import { VEFS_CLI, withScratch } from './helpers/mounts.js';
import {
  bytesOf, copyTree, filesBelow, flagProblems, immutable, manifest, manifestDiff, nlinkOf, unifyJson, writeTree,
} from './helpers/unify.js';

const KILLS = 15;

/** Runs unify with args and kills it after delay ms; answers how long a run that finished first took. */
function killAfter(stateDir: string, args: string[], delay: number): Promise<number | null> {
  const started = Date.now();
  const child = spawn(process.execPath, [VEFS_CLI, 'unify', '--quiet', ...args], { env: { ...process.env, VEFS_STATE_DIR: stateDir }, stdio: 'ignore' });
  const timer = setTimeout(() => child.kill('SIGKILL'), delay);
  return new Promise((resolve) => child.on('exit', (code) => {
    clearTimeout(timer);
    resolve(code === 0 ? Date.now() - started : null);
  }));
}

test('kill -9 at random moments never leaves a path without its full content and metadata', async (t) => {
  const s = withScratch(t, 'vefs-unify-crash');
  const tpl = path.join(s.base, 'template');
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 400; i++) files[`usr/d${i % 8}/f${i}`] = bytesOf(1 + ((i * 7919) % 100_000), i);
  writeTree(tpl, files);
  const ves = Array.from({ length: 5 }, (_, i) => {
    const ve = path.join(s.base, `ve${i + 1}`);
    copyTree(tpl, ve);
    // Some drift, so that groups differ in size and some files stay apart.
    chmodSync(path.join(ve, `usr/d${i}/f${i}`), 0o600);
    native.lsetxattr(toBytes(path.join(ve, `usr/d${i}/f${i + 8}`)), 'user.ve', Buffer.from(String(i)), 0);
    return ve;
  });
  const roots = [tpl, ...ves];
  const args = ['--template', tpl, ...ves];
  const before = manifest(roots);

  let mode: 'unify' | 'revert' = 'unify';
  let finished = 0;
  // Kills land anywhere from Node's start-up to the end of a run as long as the last finished one took.
  let span = 1500;
  for (let i = 0; i < KILLS; i++) {
    const delay = 50 + Math.floor(Math.random() * span);
    const took = await killAfter(s.stateDir, mode === 'revert' ? ['--revert', ...args] : args, delay);
    t.deepEqual(manifestDiff(before, manifest(roots)), [], `after ${mode} killed at ${delay} ms (${took !== null ? 'it had finished' : 'killed'})`);
    // A run that got to the end switches sides, so that kills keep landing in the middle of real work.
    if (took !== null) {
      finished++;
      span = took;
      mode = mode === 'unify' ? 'revert' : 'unify';
    }
    await sleep(10);
  }
  t.log(`${KILLS - finished} runs killed, ${finished} finished before their kill`);

  const final = await unifyJson(s.stateDir, ...args);
  t.deepEqual(manifestDiff(before, manifest(roots)), []);
  t.deepEqual(flagProblems(roots), [], 'shared inodes immutable, private ones not, no temporary names');
  t.is(nlinkOf(path.join(tpl, 'usr/d7/f15')), 6);
  t.is(final.report.skipped['open-for-writing'], undefined);

  await unifyJson(s.stateDir, '--revert', ...args);
  t.deepEqual(manifestDiff(before, manifest(roots)), []);
  for (const r of roots) {
    for (const f of filesBelow(r)) {
      t.is(nlinkOf(path.join(r, f)), 1, `${r}/${f}`);
      t.false(immutable(path.join(r, f)));
    }
  }
});
