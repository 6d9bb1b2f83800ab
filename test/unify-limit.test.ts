// The link limit, on a small loop-mounted ext4 image (never the host's
// disk): a kept inode that is full gives way to a new master, from the plan
// (--link-max) or from a real EMLINK at ext4's 65,000; a rerun then finds
// nothing to do. The image is checked with e2fsck afterwards.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { withScratch } from './helpers/mounts.js';
import { bytesOf, copyTree, flagProblems, inodeOf, nlinkOf, unifyJson, writeTree } from './helpers/unify.js';

/** A 64 MiB ext4 with 64 inodes, mounted in the test's scratch; unmounted and checked in teardown. */
function loopExt4(t: ExecutionContext) {
  const s = withScratch(t, 'vefs-unify-limit');
  const image = path.join(s.base, 'ext4.img');
  const mnt = s.dir('mnt');
  execFileSync('truncate', ['-s', '64M', image]);
  execFileSync('mkfs.ext4', ['-q', '-N', '64', image]);
  execFileSync('mount', ['-o', 'loop', image, mnt]);
  // Registered after withScratch, so it runs first: unmount, then the scratch goes.
  t.teardown(() => {
    execFileSync('chattr', ['-R', '-i', mnt]);
    execFileSync('umount', [mnt]);
    execFileSync('e2fsck', ['-fn', image], { stdio: 'ignore' });
  });
  return { s, mnt };
}

function ves(mnt: string, tpl: string, names: string[]): string[] {
  return names.map((n) => {
    const ve = path.join(mnt, n);
    copyTree(tpl, ve);
    return ve;
  });
}

test('--link-max: a full master gives way to the next inode; a rerun plans nothing', async (t) => {
  const { s, mnt } = loopExt4(t);
  const tpl = path.join(mnt, 'template');
  writeTree(tpl, { 'lib/f': bytesOf(10_000, 7) });
  const roots = ves(mnt, tpl, ['ve1', 've2', 've3', 've4', 've5', 've6']);
  const { report } = await unifyJson(s.stateDir, '--link-max', '3', '--template', tpl, ...roots);
  const f = (r: string): string => path.join(r, 'lib/f');
  t.is(nlinkOf(f(tpl)), 3);
  t.is(report.linksMade, 4);
  const inodes = new Set([tpl, ...roots].map((r) => inodeOf(f(r))));
  t.is(inodes.size, 3, 'three inodes: 3 + 3 + 1 names');
  t.true([tpl, ...roots].every((r) => nlinkOf(f(r)) <= 3));
  t.deepEqual(flagProblems([tpl, ...roots]), []);
  const rerun = await unifyJson(s.stateDir, '--link-max', '3', '--template', tpl, ...roots);
  t.is(rerun.report.linksMade, 0);
  t.is(rerun.report.bytesRead, 0);
});

test('a real EMLINK at ext4\'s 65,000 links picks a new master', async (t) => {
  const { s, mnt } = loopExt4(t);
  const tpl = path.join(mnt, 'template');
  writeTree(tpl, { 'lib/f': bytesOf(3_000, 9) });
  // The template's inode gets close to the limit through names outside the ROOTs.
  const extra = path.join(mnt, 'extra');
  fs.mkdirSync(extra);
  for (let i = 0; i < 64_998; i++) fs.linkSync(path.join(tpl, 'lib/f'), path.join(extra, `l${i}`));
  t.is(nlinkOf(path.join(tpl, 'lib/f')), 64_999);
  const [ve1, ve2, ve3] = ves(mnt, tpl, ['ve1', 've2', 've3']) as [string, string, string];
  const f = (r: string): string => path.join(r, 'lib/f');
  // The plan believes there is room: the kernel's EMLINK decides.
  const first = await unifyJson(s.stateDir, '--link-max', '100000', '--template', tpl, ve1, ve2, ve3);
  t.is(nlinkOf(f(tpl)), 65_000);
  t.is(inodeOf(f(ve1)), inodeOf(f(tpl)));
  t.is(first.report.skipped['link-limit'], 1);
  t.not(inodeOf(f(ve2)), inodeOf(f(tpl)));
  t.is(inodeOf(f(ve3)), inodeOf(f(ve2)), 'the target that met EMLINK became the master of the rest');
  t.deepEqual(flagProblems([tpl, ve1, ve2, ve3]), []);
  // With ext4's limit known to the plan, new VEs go to the second master without meeting EMLINK.
  const [ve4, ve5] = ves(mnt, tpl, ['ve4', 've5']) as [string, string];
  const second = await unifyJson(s.stateDir, '--template', tpl, ve1, ve2, ve3, ve4, ve5);
  t.is(second.report.skipped['link-limit'], undefined);
  t.is(second.report.linksMade, 2);
  t.is(inodeOf(f(ve4)), inodeOf(f(ve2)));
  t.is(inodeOf(f(ve5)), inodeOf(f(ve2)));
  t.is(nlinkOf(f(ve2)), 4);
});
