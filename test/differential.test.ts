// Differential test: the same workload on VEFS and on kernel overlayfs (the
// reference) must give the same per-step results and the same merged tree;
// then each must read the private tree the other wrote as its writer did.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { leftoverMounts, makeScratch, mountOverlay, mountVefs, vefsTarget, withScratch, type MountOptions, type Mounted } from './helpers/mounts.js';
import { diffSnapshots, snapshotTree, type Snapshot } from './helpers/tree.js';
import { describeStep, runWorkload, type Step, type StepResult, type Timespec } from './helpers/workload.js';

const BIG = Array.from({ length: 4000 }, (_, i) => `line ${i} of a file large enough to be copied up in more than one chunk\n`).join('');

// Two template layers, topmost first in the mount: 'top' overrides README.txt
// and adds to etc/ and data/, so some directories are merged across layers.
const FIXTURE: Step[] = [
  { op: 'mkdir', args: { path: 'base' } },
  { op: 'create', args: { path: 'base/README.txt', data: 'base readme\n' } },
  { op: 'mkdir', args: { path: 'base/etc' } },
  { op: 'create', args: { path: 'base/etc/hosts', data: '127.0.0.1 localhost\n' } },
  { op: 'create', args: { path: 'base/etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' } },
  { op: 'create', args: { path: 'base/etc/group', data: 'root:x:0:\n' } },
  { op: 'symlink', args: { target: '../README.txt', path: 'base/etc/motd' } },
  { op: 'mkdir', args: { path: 'base/etc/conf.d' } },
  { op: 'create', args: { path: 'base/etc/conf.d/a.conf', data: 'a=1\n' } },
  { op: 'create', args: { path: 'base/etc/conf.d/b.conf', data: 'b=2\n' } },
  { op: 'mkdir', args: { path: 'base/etc/profile.d' } },
  { op: 'create', args: { path: 'base/etc/profile.d/z.sh', data: 'export Z=1\n' } },
  { op: 'mkdir', args: { path: 'base/bin' } },
  { op: 'create', args: { path: 'base/bin/tool', data: '#!/bin/sh\necho tool\n', mode: 0o755 } },
  { op: 'link', args: { existing: 'base/bin/tool', path: 'base/bin/tool-link' } },
  { op: 'create', args: { path: 'base/bin/suid', data: '#!/bin/sh\n', mode: 0o755 } },
  { op: 'chmod', args: { path: 'base/bin/suid', mode: 0o4755 } },
  { op: 'mkdir', args: { path: 'base/var' } },
  { op: 'mkdir', args: { path: 'base/var/empty' } },
  { op: 'mkdir', args: { path: 'base/var/cache' } },
  { op: 'mkdir', args: { path: 'base/var/log' } },
  { op: 'create', args: { path: 'base/var/log/old.log', data: 'old log\n' } },
  { op: 'mkfifo', args: { path: 'base/var/fifo' } },
  { op: 'mkdir', args: { path: 'base/var/spool', mode: 0o700 } },
  { op: 'create', args: { path: 'base/var/spool/job', data: 'job\n', mode: 0o600 } },
  { op: 'chown', args: { path: 'base/var/spool/job', uid: 1000, gid: 1000 } },
  { op: 'chown', args: { path: 'base/var/spool', uid: 1000, gid: 1000 } },
  { op: 'mkdir', args: { path: 'base/data' } },
  { op: 'create', args: { path: 'base/data/xattr.txt', data: 'has xattrs\n' } },
  { op: 'setxattr', args: { path: 'base/data/xattr.txt', name: 'user.color', value: 'blue' } },
  { op: 'setxattr', args: { path: 'base/data/xattr.txt', name: 'user.bin', value: '0x00ff01' } },
  { op: 'create', args: { path: 'base/data/timed.txt', data: 'timed\n' } },
  { op: 'create', args: { path: 'base/data/big.bin', data: BIG } },
  { op: 'mkdir', args: { path: 'base/deep' } },
  { op: 'mkdir', args: { path: 'base/deep/a' } },
  { op: 'mkdir', args: { path: 'base/deep/a/b' } },
  { op: 'mkdir', args: { path: 'base/deep/a/b/c' } },
  { op: 'mkdir', args: { path: 'base/deep/a/b/c/d' } },
  { op: 'mkdir', args: { path: 'base/deep/a/b/c/d/e' } },
  { op: 'mkdir', args: { path: 'base/deep/a/b/c/d/e/f' } },
  { op: 'create', args: { path: 'base/deep/a/b/c/d/e/f/leaf.txt', data: 'leaf\n' } },
  { op: 'symlink', args: { target: 'nowhere', path: 'base/dead' } },
  { op: 'symlink', args: { target: '/etc/hostname', path: 'base/abs-link' } },
  { op: 'mkdir', args: { path: 'top' } },
  { op: 'create', args: { path: 'top/README.txt', data: 'top readme\n' } },
  { op: 'mkdir', args: { path: 'top/etc' } },
  { op: 'create', args: { path: 'top/etc/issue', data: 'VEFS template\n' } },
  { op: 'mkdir', args: { path: 'top/data' } },
  { op: 'create', args: { path: 'top/data/top.txt', data: 'from the top layer\n' } },
  { op: 'mkdir', args: { path: 'top/opt' } },
  { op: 'mkdir', args: { path: 'top/opt/app' } },
  { op: 'create', args: { path: 'top/opt/app/config.json', data: '{"debug":false}\n' } },
];

const ts = (sec: number, nsec: number): Timespec => [sec, nsec];

// Every step's result is compared with the reference, failures included, so
// expected errors are part of the script rather than separate assertions.
const WORKLOAD: Step[] = [
  // The merged view before any change.
  { op: 'readdir', args: { path: '.' } },
  { op: 'readdir', args: { path: 'etc' } },
  { op: 'read', args: { path: 'README.txt' } },
  { op: 'read', args: { path: 'etc/motd' } },
  { op: 'readlink', args: { path: 'etc/motd' } },
  { op: 'stat', args: { path: 'bin/suid' } },
  { op: 'stat', args: { path: 'var/spool' } },
  { op: 'sameFile', args: { a: 'bin/tool', b: 'bin/tool-link' } },
  { op: 'listxattr', args: { path: 'data/xattr.txt' } },
  { op: 'getxattr', args: { path: 'data/xattr.txt', name: 'user.color' } },

  // Data changes to template files: copy-up.
  { op: 'append', args: { path: 'etc/hosts', data: '::1 localhost\n' } },
  { op: 'read', args: { path: 'etc/hosts' } },
  { op: 'writeAt', args: { path: 'data/big.bin', offset: 100_000, data: 'PATCHED' } },
  { op: 'read', args: { path: 'data/big.bin' } },
  { op: 'truncate', args: { path: 'etc/passwd', length: 10 } },
  { op: 'read', args: { path: 'etc/passwd' } },
  { op: 'truncate', args: { path: 'var/log/old.log', length: 1 << 20 } },
  { op: 'stat', args: { path: 'var/log/old.log' } },
  { op: 'overwrite', args: { path: 'README.txt', data: 'replaced\n' } },
  { op: 'read', args: { path: 'README.txt' } },
  { op: 'read', args: { path: 'etc/motd' } },

  // Create and unlink.
  { op: 'create', args: { path: 'new.txt', data: 'new\n' } },
  { op: 'create', args: { path: 'etc/hosts', data: 'x' } },
  { op: 'create', args: { path: 'nodir/x', data: 'x' } },
  { op: 'create', args: { path: 'opt/app/new.json', data: '{}\n' } },
  { op: 'unlink', args: { path: 'etc/conf.d/a.conf' } },
  { op: 'read', args: { path: 'etc/conf.d/a.conf' } },
  { op: 'unlink', args: { path: 'etc/conf.d/a.conf' } },
  { op: 'readdir', args: { path: 'etc/conf.d' } },
  { op: 'unlink', args: { path: 'etc/conf.d/b.conf' } },
  { op: 'readdir', args: { path: 'etc/conf.d' } },
  { op: 'unlink', args: { path: 'etc/group' } },
  { op: 'create', args: { path: 'etc/group', data: 'wheel:x:10:\n' } },
  { op: 'read', args: { path: 'etc/group' } },
  { op: 'unlink', args: { path: 'etc' } },

  // mkdir and rmdir, including over whiteouts (opaque directories).
  { op: 'rmdir', args: { path: 'etc/conf.d' } },
  { op: 'stat', args: { path: 'etc/conf.d' } },
  { op: 'mkdir', args: { path: 'etc/conf.d' } },
  { op: 'readdir', args: { path: 'etc/conf.d' } },
  { op: 'create', args: { path: 'etc/conf.d/c.conf', data: 'c=3\n' } },
  { op: 'rmdir', args: { path: 'var/empty' } },
  { op: 'mkdir', args: { path: 'var/empty', mode: 0o700 } },
  { op: 'rmdir', args: { path: 'etc' } },
  { op: 'rmdir', args: { path: 'README.txt' } },
  { op: 'rmdir', args: { path: 'nodir' } },
  { op: 'mkdir', args: { path: 'README.txt' } },
  { op: 'mkdir', args: { path: 'etc' } },

  // Renames.
  { op: 'rename', args: { from: 'etc/hosts', to: 'etc/hosts.bak' } },
  { op: 'rename', args: { from: 'etc/issue', to: 'etc/issue.old' } },
  { op: 'rename', args: { from: 'data/timed.txt', to: 'var/timed.txt' } },
  { op: 'rename', args: { from: 'new.txt', to: 'etc/passwd' } },
  { op: 'rename', args: { from: 'etc/profile.d', to: 'var/cache' } },
  { op: 'readdir', args: { path: 'var/cache' } },
  { op: 'read', args: { path: 'var/cache/z.sh' } },
  { op: 'rename', args: { from: 'bin', to: 'etc' } },
  { op: 'rename', args: { from: 'deep/a', to: 'deep/z' } },
  { op: 'readdir', args: { path: 'deep' } },
  { op: 'read', args: { path: 'deep/z/b/c/d/e/f/leaf.txt' } },
  { op: 'create', args: { path: 'deep/z/b/new.txt', data: 'in a renamed dir\n' } },
  { op: 'rename', args: { from: 'deep/z', to: 'moved' } },
  { op: 'readdir', args: { path: 'moved/b' } },
  { op: 'read', args: { path: 'moved/b/c/d/e/f/leaf.txt' } },
  { op: 'mkdir', args: { path: 'deep/a' } },
  { op: 'readdir', args: { path: 'deep/a' } },
  { op: 'mkdir', args: { path: 'vdir' } },
  { op: 'create', args: { path: 'vdir/one', data: '1\n' } },
  { op: 'mkdir', args: { path: 'vdir/sub' } },
  { op: 'create', args: { path: 'vdir/sub/two', data: '2\n' } },
  { op: 'rename', args: { from: 'vdir', to: 'var/vdir2' } },
  { op: 'readdir', args: { path: 'var/vdir2' } },
  { op: 'rename', args: { from: 'var/vdir2', to: 'README.txt' } },
  { op: 'rename', args: { from: 'README.txt', to: 'var' } },
  { op: 'rename', args: { from: 'data', to: 'data/sub' } },
  { op: 'rename', args: { from: 'missing', to: 'x' } },
  { op: 'rename', args: { from: 'var/fifo', to: 'fifo2' } },
  { op: 'rename', args: { from: 'dead', to: 'dead2' } },
  { op: 'readlink', args: { path: 'dead2' } },

  // Symlinks.
  { op: 'symlink', args: { target: 'etc/hosts.bak', path: 'link-to-hosts' } },
  { op: 'readlink', args: { path: 'link-to-hosts' } },
  { op: 'read', args: { path: 'link-to-hosts' } },
  { op: 'symlink', args: { target: 'x', path: 'etc/passwd' } },
  { op: 'readlink', args: { path: 'etc/passwd' } },

  // Hard links, of a new file and of a template file.
  { op: 'create', args: { path: 'new2.txt', data: 'two names\n' } },
  { op: 'link', args: { existing: 'new2.txt', path: 'new2-link.txt' } },
  { op: 'sameFile', args: { a: 'new2.txt', b: 'new2-link.txt' } },
  { op: 'append', args: { path: 'new2-link.txt', data: 'more\n' } },
  { op: 'read', args: { path: 'new2.txt' } },
  { op: 'link', args: { existing: 'bin/tool', path: 'bin/tool2' } },
  { op: 'sameFile', args: { a: 'bin/tool', b: 'bin/tool2' } },
  { op: 'sameFile', args: { a: 'bin/tool', b: 'bin/tool-link' } },
  { op: 'link', args: { existing: 'etc', path: 'etc-link' } },
  { op: 'link', args: { existing: 'new2.txt', path: 'etc/passwd' } },

  // Metadata changes to untouched template objects: metadata copy-up, which
  // must keep data, xattrs and times.
  { op: 'chmod', args: { path: 'data/top.txt', mode: 0o600 } },
  { op: 'chmod', args: { path: 'var/log', mode: 0o750 } },
  { op: 'chmod', args: { path: 'fifo2', mode: 0o600 } },
  { op: 'chown', args: { path: 'data/xattr.txt', uid: 1000, gid: 1000 } },
  { op: 'chown', args: { path: 'bin/suid', uid: 1000, gid: 1000 } },
  { op: 'stat', args: { path: 'bin/suid' } },
  { op: 'lchown', args: { path: 'etc/motd', uid: 1000, gid: 1000 } },
  { op: 'chown', args: { path: 'var/spool', uid: 0, gid: 0 } },
  { op: 'utimes', args: { path: 'abs-link', atime: ts(1111111111, 111111111), mtime: ts(1222222222, 222222222), noFollow: true } },
  { op: 'utimes', args: { path: 'opt/app/config.json', atime: ts(1300000000, 1), mtime: ts(1300000001, 999999999) } },
  { op: 'utimes', args: { path: 'var/log', atime: ts(1400000000, 500), mtime: ts(1400000001, 123456789) } },
  { op: 'utimes', args: { path: 'etc/hosts.bak', atime: ts(1500000000, 0), mtime: ts(1500000000, 987654321) } },
  { op: 'utimes', args: { path: 'missing', atime: ts(1, 0), mtime: ts(1, 0) } },

  // Extended attributes.
  { op: 'setxattr', args: { path: 'moved/b/c/d/e/f/leaf.txt', name: 'user.note', value: 'deep' } },
  { op: 'setxattr', args: { path: 'etc', name: 'user.dir', value: 'yes' } },
  { op: 'getxattr', args: { path: 'etc', name: 'user.dir' } },
  { op: 'setxattr', args: { path: 'data/xattr.txt', name: 'user.color', value: 'green' } },
  { op: 'removexattr', args: { path: 'data/xattr.txt', name: 'user.bin' } },
  { op: 'getxattr', args: { path: 'data/xattr.txt', name: 'user.bin' } },
  { op: 'removexattr', args: { path: 'data/xattr.txt', name: 'user.nope' } },
  { op: 'listxattr', args: { path: 'data/xattr.txt' } },
  { op: 'setxattr', args: { path: 'bin/tool', name: 'security.vefs', value: 'sec' } },
  { op: 'getxattr', args: { path: 'bin/tool', name: 'security.vefs' } },
  { op: 'listxattr', args: { path: 'bin/tool2' } },
  { op: 'setxattr', args: { path: 'data/top.txt', name: 'user.empty', value: '' } },
  { op: 'listxattr', args: { path: 'data/top.txt' } },

  // Special files and sparse growth.
  { op: 'mkfifo', args: { path: 'var/newfifo' } },
  { op: 'stat', args: { path: 'var/newfifo' } },
  { op: 'mknodChar', args: { path: 'null-dev', major: 1, minor: 3 } },
  { op: 'stat', args: { path: 'null-dev' } },
  { op: 'mknodChar', args: { path: 'null-dev', major: 1, minor: 3 } },
  { op: 'create', args: { path: 'sparse.bin', data: '' } },
  { op: 'truncate', args: { path: 'sparse.bin', length: 10 << 20 } },
  { op: 'stat', args: { path: 'sparse.bin' } },

  // The merged directories at the end.
  { op: 'readdir', args: { path: '.' } },
  { op: 'readdir', args: { path: 'etc' } },
  { op: 'readdir', args: { path: 'var' } },
  { op: 'readdir', args: { path: 'data' } },
  { op: 'readdir', args: { path: 'bin' } },
  { op: 'readdir', args: { path: 'deep' } },
  { op: 'readdir', args: { path: 'moved' } },
  { op: 'readdir', args: { path: 'opt/app' } },
];

/** Gives every fixture object its own nanosecond times, so any rounding or reset on copy-up shows. */
function stampTimes(root: string): void {
  const paths: string[] = [];
  const walk = (rel: string): void => {
    paths.push(rel);
    const abs = path.join(root, rel);
    if (fs.lstatSync(abs).isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(path.join(rel, n));
  };
  walk('.');
  const steps = paths.map((p, i): Step => ({
    op: 'utimes',
    args: { path: p, atime: ts(1_000_000_000 + i * 7, 100_000_000 + i * 13), mtime: ts(1_100_000_000 + i * 11, 200_000_000 + i * 17), noFollow: true },
  }));
  assertAllOk(runWorkload(root, steps), steps, `stamping times below ${root}`);
}

function assertAllOk(results: StepResult[], steps: Step[], what: string): void {
  const failed = results.flatMap((r, i) => (r.ok ? [] : [`${describeStep(i, steps[i])} → ${r.code}`]));
  if (failed.length > 0) throw new Error(`${what}:\n${failed.join('\n')}`);
}

interface Run {
  name: string;
  templateCopy: string;
  templates: string[];
  privateDir: string;
  results: StepResult[];
  merged: Snapshot;
  templateBefore: Snapshot;
  templateAfter: Snapshot;
  /** Wall-clock bounds of the workload, in ns. */
  startNs: bigint;
  endNs: bigint;
}

const scratch = makeScratch('vefs-diff');
const templateSrc = scratch.dir('template');
const TEMPLATE_SNAP = { withAtime: true, withCtime: true } as const;

type MountFn = (opts: MountOptions) => Promise<Mounted>;

async function mountAndSnapshot(mount: MountFn, opts: MountOptions): Promise<Snapshot> {
  const m = await mount(opts);
  const snap = snapshotTree(m.mountpoint, { dropOverlayXattrs: true });
  await m.unmount();
  return snap;
}

async function workloadRun(name: string, mount: MountFn): Promise<Run> {
  const dir = scratch.dir(name);
  const templateCopy = path.join(dir, 'template');
  execFileSync('cp', ['-a', templateSrc, templateCopy]);
  const templates = [path.join(templateCopy, 'top'), path.join(templateCopy, 'base')];
  const privateDir = path.join(dir, 'private');
  fs.mkdirSync(privateDir, { mode: 0o755 });
  const templateBefore = snapshotTree(templateCopy, TEMPLATE_SNAP);
  const m = await mount({ templates, privateDir, workDir: path.join(dir, 'work'), mountpoint: path.join(dir, 'mnt'), stateDir: scratch.stateDir });
  const startNs = BigInt(Date.now()) * 1_000_000n;
  const results = runWorkload(m.mountpoint, WORKLOAD);
  const endNs = BigInt(Date.now()) * 1_000_000n;
  const merged = snapshotTree(m.mountpoint, { dropOverlayXattrs: true });
  await m.unmount();
  return { name, templateCopy, templates, privateDir, results, merged, templateBefore, templateAfter: snapshotTree(templateCopy, TEMPLATE_SNAP), startNs, endNs };
}

let reference: Run;
let referenceAgain: Run;
let vefs: Run;
/**
 * Paths whose mtime the reference itself does not reproduce from one run to
 * the next: objects the workload created or modified without setting times
 * (files written, directories whose entries changed, the mount root, which is
 * the fresh private dir). Only for these may VEFS's mtime differ from the
 * reference; everything left alone or given explicit times is compared to the
 * nanosecond.
 */
let volatileMtime: Set<string>;

test.before(async () => {
  assertAllOk(runWorkload(templateSrc, FIXTURE), FIXTURE, 'building the template fixture');
  stampTimes(templateSrc);
  reference = await workloadRun('overlay', mountOverlay);
  referenceAgain = await workloadRun('overlay-again', mountOverlay);
  vefs = await workloadRun(vefsTarget(), mountVefs);
  volatileMtime = new Set(reference.merged.entries
    .filter((e) => referenceAgain.merged.entries.find((o) => o.path === e.path)?.mtimeNs !== e.mtimeNs)
    .map((e) => e.path));
});

test.after.always(() => scratch.cleanup());

test('the reference is deterministic apart from the mtimes the workload sets to now', (t) => {
  t.deepEqual(referenceAgain.results, reference.results);
  t.deepEqual(diffSnapshots(reference.merged, referenceAgain.merged, { ignore: (p, f) => f === 'mtimeNs' && volatileMtime.has(p) }), []);
  // Guards against a workload that changes nothing, which would make the comparisons vacuous.
  t.true(volatileMtime.has('etc/group') && volatileMtime.has('etc/conf.d'), [...volatileMtime].join(' '));
});

test('every workload step gives the same result as on kernel overlayfs', (t) => {
  t.is(vefs.results.length, WORKLOAD.length);
  const mismatches = WORKLOAD.flatMap((step, i) => {
    const want = JSON.stringify(reference.results[i]);
    const got = JSON.stringify(vefs.results[i]);
    return want === got ? [] : [`${describeStep(i, step)}: overlayfs ${want}, ${vefs.name} ${got}`];
  });
  t.deepEqual(mismatches, []);
});

test('the merged tree after the workload equals the reference', (t) => {
  t.deepEqual(diffSnapshots(reference.merged, vefs.merged, { ignore: (p, f) => f === 'mtimeNs' && volatileMtime.has(p) }), []);
});

test('objects the workload changed got a fresh mtime', (t) => {
  // Slack for coarse kernel timestamps, which may trail the wall clock by a
  // tick, and for Date.now() dropping the sub-millisecond part.
  const from = vefs.startNs - 1_000_000_000n;
  const to = vefs.endNs + 1_000_000_000n;
  const stale = vefs.merged.entries
    .filter((e) => volatileMtime.has(e.path) && e.path !== '.')
    .filter((e) => BigInt(e.mtimeNs) < from || BigInt(e.mtimeNs) > to)
    .map((e) => `${e.path}: mtime ${e.mtimeNs} outside the workload's ${vefs.startNs}..${vefs.endNs}`);
  t.deepEqual(stale, []);
});

test('the templates are left untouched, atime and ctime included', (t) => {
  t.deepEqual([reference, referenceAgain, vefs].flatMap((run) => diffSnapshots(run.templateBefore, run.templateAfter).map((d) => `${run.name}: ${d}`)), []);
});

test('kernel overlayfs reads the private tree VEFS wrote as VEFS did', async (t) => {
  const dir = withScratch(t, 'vefs-diff-cross-overlay').base;
  const snap = await mountAndSnapshot(mountOverlay, { templates: vefs.templates, privateDir: vefs.privateDir, workDir: path.join(dir, 'work'), mountpoint: path.join(dir, 'mnt') });
  t.deepEqual(diffSnapshots(vefs.merged, snap), []);
  t.deepEqual(diffSnapshots(vefs.templateBefore, snapshotTree(vefs.templateCopy, TEMPLATE_SNAP)), []);
  t.deepEqual(leftoverMounts(dir), []);
});

test('VEFS reads the private tree kernel overlayfs wrote as overlayfs did', async (t) => {
  const dir = withScratch(t, 'vefs-diff-cross-vefs').base;
  const snap = await mountAndSnapshot(mountVefs, { templates: reference.templates, privateDir: reference.privateDir, workDir: path.join(dir, 'work'), mountpoint: path.join(dir, 'mnt'), stateDir: scratch.stateDir });
  t.deepEqual(diffSnapshots(reference.merged, snap), []);
  t.deepEqual(diffSnapshots(reference.templateBefore, snapshotTree(reference.templateCopy, TEMPLATE_SNAP)), []);
  t.deepEqual(leftoverMounts(dir), []);
});
