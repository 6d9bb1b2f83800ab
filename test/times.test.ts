// Timestamps on a VEFS mount, to the nanosecond: touch -a/-m/-h with dates,
// UTIME_NOW, os.utime(ns=...), times of template objects as the template has
// them, and the private tree's copies carrying the same times after unmount.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mountOverlay, mountVefs, withScratch, type Mounted } from './helpers/mounts.js';

const NS = 1_000_000_000n;
/** 2001-02-03 04:05:06.123456789 UTC and friends, as nanoseconds since the epoch. */
const DATE_M = '2001-02-03 04:05:06.123456789';
const DATE_M_NS = BigInt(Date.UTC(2001, 1, 3, 4, 5, 6) / 1000) * NS + 123456789n;
const DATE_A = '2002-03-04 05:06:07.987654321';
const DATE_A_NS = BigInt(Date.UTC(2002, 2, 4, 5, 6, 7) / 1000) * NS + 987654321n;
const DATE_H = '2003-04-05 06:07:08.000000001';
const DATE_H_NS = BigInt(Date.UTC(2003, 3, 5, 6, 7, 8) / 1000) * NS + 1n;

function sh(cmd: string, args: string[]): string {
  try {
    // UTC, so the dates above mean what the constants say.
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TZ: 'UTC' } });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\nstderr: ${e.stderr ?? ''}`);
  }
}

const lstat = (p: string): fs.BigIntStats => fs.lstatSync(p, { bigint: true });

interface Times { atimeNs: string; mtimeNs: string }
const timesOf = (p: string): Times => {
  const st = lstat(p);
  return { atimeNs: String(st.atimeNs), mtimeNs: String(st.mtimeNs) };
};
const allTimesOf = (p: string): Times & { ctimeNs: string } => ({ ...timesOf(p), ctimeNs: String(lstat(p).ctimeNs) });

/** stat(1)'s own rendering, as a user would read it. */
const statText = (p: string, fmt: string): string => sh('stat', ['-c', fmt, p]).trim();

/** Now, in the filesystem's nanoseconds. */
const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

/**
 * The template:
 *   file.txt, other.txt, keep.txt, when.txt (times set to odd nanoseconds)
 *   etc/ hosts, motd -> ../file.txt
 *   link -> file.txt
 *   fifo
 * Atimes are older than mtimes and far in the past; none equals "now".
 */
function buildTemplate(tpl: string): void {
  fs.writeFileSync(path.join(tpl, 'file.txt'), 'file\n');
  fs.writeFileSync(path.join(tpl, 'other.txt'), 'other\n');
  fs.writeFileSync(path.join(tpl, 'keep.txt'), 'keep\n');
  fs.writeFileSync(path.join(tpl, 'when.txt'), 'when\n');
  fs.mkdirSync(path.join(tpl, 'etc'));
  fs.writeFileSync(path.join(tpl, 'etc/hosts'), '127.0.0.1 localhost\n');
  fs.symlinkSync('../file.txt', path.join(tpl, 'etc/motd'));
  fs.symlinkSync('file.txt', path.join(tpl, 'link'));
  sh('mkfifo', [path.join(tpl, 'fifo')]);
  let n = 0;
  for (const rel of ['file.txt', 'other.txt', 'keep.txt', 'when.txt', 'etc/hosts', 'etc/motd', 'link', 'fifo', 'etc', '.']) {
    n++;
    const p = path.join(tpl, rel);
    sh('touch', ['-h', '-a', '-d', `@${1_100_000_000 + n}.${String(100_000_000 + n * 7919).padStart(9, '0')}`, p]);
    sh('touch', ['-h', '-m', '-d', `@${1_200_000_000 + n}.${String(200_000_000 + n * 104729).padStart(9, '0')}`, p]);
  }
}

interface Ve {
  tpl: string;
  priv: string;
  m(rel: string): string;
  p(rel: string): string;
  tp(rel: string): string;
  unmount(): Promise<void>;
}

async function mountVe(t: ExecutionContext, opts: { overlay?: boolean } = {}): Promise<Ve> {
  const scratch = withScratch(t, opts.overlay ? 'vefs-times-ovl' : 'vefs-times');
  const tpl = scratch.dir('template');
  buildTemplate(tpl);
  const priv = scratch.dir('private');
  const mnt = scratch.dir('mnt');
  const mo = { templates: [tpl], privateDir: priv, workDir: scratch.dir('work'), mountpoint: mnt, stateDir: scratch.stateDir };
  const mounted: Mounted = opts.overlay ? await mountOverlay(mo) : await mountVefs(mo);
  let up = true;
  return {
    tpl, priv,
    m: (rel) => path.join(mnt, rel),
    p: (rel) => path.join(priv, rel),
    tp: (rel) => path.join(tpl, rel),
    async unmount() {
      if (!up) return;
      up = false;
      await mounted.unmount();
    },
  };
}

/** After unmount, the private tree's objects must carry exactly the times the mount showed. */
async function privateKeepsTimes(t: ExecutionContext, ve: Ve, seen: Record<string, Times>): Promise<void> {
  const onMount = Object.fromEntries(Object.keys(seen).map((rel) => [rel, timesOf(ve.m(rel))]));
  t.deepEqual(onMount, seen, 'the mount, just before unmount');
  await ve.unmount();
  const onDisk = Object.fromEntries(Object.keys(seen).map((rel) => [rel, timesOf(ve.p(rel))]));
  t.deepEqual(onDisk, seen, 'the private tree after unmount');
}

test('touch -m -d with nanoseconds on a template file sets exactly that mtime and leaves the atime', async (t) => {
  const ve = await mountVe(t);
  const before = allTimesOf(ve.m('file.txt'));
  const tplBefore = allTimesOf(ve.tp('file.txt'));
  t.deepEqual(before, tplBefore, 'before: the mount shows the template\'s times');
  const start = nowNs();
  sh('touch', ['-m', '-d', DATE_M, ve.m('file.txt')]);
  const after = allTimesOf(ve.m('file.txt'));
  t.is(after.mtimeNs, String(DATE_M_NS), 'mtime to the nanosecond');
  t.is(statText(ve.m('file.txt'), '%.9Y'), '981173106.123456789', 'stat -c %.9Y');
  t.is(after.atimeNs, before.atimeNs, 'atime unchanged');
  t.true(BigInt(after.ctimeNs) >= start - NS / 10n, 'ctime moved to now');
  t.deepEqual(allTimesOf(ve.tp('file.txt')), tplBefore, 'the template file keeps its times');
  await privateKeepsTimes(t, ve, { 'file.txt': { atimeNs: before.atimeNs, mtimeNs: String(DATE_M_NS) } });
});

test('touch -a -d with nanoseconds on a template file sets exactly that atime and leaves the mtime', async (t) => {
  const ve = await mountVe(t);
  const before = timesOf(ve.m('other.txt'));
  sh('touch', ['-a', '-d', DATE_A, ve.m('other.txt')]);
  const after = timesOf(ve.m('other.txt'));
  t.is(after.atimeNs, String(DATE_A_NS), 'atime to the nanosecond');
  t.is(statText(ve.m('other.txt'), '%.9X'), '1015218367.987654321', 'stat -c %.9X');
  t.is(after.mtimeNs, before.mtimeNs, 'mtime unchanged');
  // And a second change of the now private copy, the other way round.
  sh('touch', ['-m', '-d', DATE_M, ve.m('other.txt')]);
  t.deepEqual(timesOf(ve.m('other.txt')), { atimeNs: String(DATE_A_NS), mtimeNs: String(DATE_M_NS) });
  t.deepEqual(timesOf(ve.tp('other.txt')), before, 'the template file keeps its times');
  await privateKeepsTimes(t, ve, { 'other.txt': { atimeNs: String(DATE_A_NS), mtimeNs: String(DATE_M_NS) } });
});

test('touch without a date (UTIME_NOW) sets atime and mtime to now', async (t) => {
  const ve = await mountVe(t);
  fs.writeFileSync(ve.m('new.txt'), 'new');
  sh('touch', ['-d', '2001-01-01', ve.m('new.txt')]);
  const tplBefore = allTimesOf(ve.tp('keep.txt'));
  // The filesystem's clock is coarse: allow it to lag a little behind ours.
  const start = nowNs() - NS / 10n;
  sh('touch', [ve.m('keep.txt')]);
  sh('touch', [ve.m('new.txt')]);
  sh('touch', [ve.m('etc')]);
  const end = nowNs() + NS / 10n;
  const seen: Record<string, Times> = {};
  for (const rel of ['keep.txt', 'new.txt', 'etc']) {
    const st = lstat(ve.m(rel));
    for (const [k, v] of [['atime', st.atimeNs], ['mtime', st.mtimeNs], ['ctime', st.ctimeNs]] as const) {
      t.true(v >= start && v <= end, `${rel} ${k} ${v} within [${start}, ${end}]`);
    }
    t.not(st.mtimeNs % NS, 0n, `${rel}: the time has nanoseconds, not whole seconds`);
    seen[rel] = timesOf(ve.m(rel));
  }
  t.deepEqual(allTimesOf(ve.tp('keep.txt')), tplBefore, 'the template file keeps its times');
  // touch -a / -m alone with UTIME_NOW on one field, UTIME_OMIT on the other.
  sh('touch', ['-a', '-d', DATE_A, ve.m('keep.txt')]);
  sh('touch', ['-m', '-d', DATE_M, ve.m('keep.txt')]);
  const s2 = nowNs() - NS / 10n;
  sh('touch', ['-a', ve.m('keep.txt')]);
  t.is(timesOf(ve.m('keep.txt')).mtimeNs, String(DATE_M_NS), 'touch -a leaves mtime');
  t.true(BigInt(timesOf(ve.m('keep.txt')).atimeNs) >= s2, 'touch -a sets atime to now');
  sh('touch', ['-m', ve.m('keep.txt')]);
  const k = timesOf(ve.m('keep.txt'));
  t.true(BigInt(k.mtimeNs) >= s2, 'touch -m sets mtime to now');
  seen['keep.txt'] = k;
  await privateKeepsTimes(t, ve, seen);
});

test('os.utime(ns=...) lands exactly, as on the private tree\'s own filesystem', async (t) => {
  const ve = await mountVe(t);
  const cases: Array<[bigint, bigint]> = [
    [1n, 999_999_999n],
    [1_234_567_890_123_456_789n, 987_654_321_987_654_321n],
    [4_102_444_800_999_999_999n, 4_102_444_801_000_000_001n], // 2100
    [-1_234_567_890_876_543_211n, -1n],                       // before 1970
    [0n, 1_700_000_000_000_000_000n],
  ];
  const script = `
import json, os, sys
p = sys.argv[1]
out = []
for a, m in json.loads(sys.argv[2]):
    os.utime(p, ns=(int(a), int(m)))
    st = os.lstat(p)
    out.append([str(st.st_atime_ns), str(st.st_mtime_ns)])
print(json.dumps(out))`;
  const run = (p: string): string[][] =>
    JSON.parse(sh('python3', ['-c', script, p, JSON.stringify(cases.map(([a, m]) => [String(a), String(m)]))])) as string[][];
  // The reference: the same calls on a plain file beside the private tree.
  const ref = path.join(path.dirname(ve.priv), 'ref.txt');
  fs.writeFileSync(ref, 'ref');
  const expected = run(ref);
  t.deepEqual(expected[1], ['1234567890123456789', '987654321987654321'], 'the backing filesystem keeps nanoseconds');
  t.deepEqual(run(ve.m('when.txt')), expected, 'a template file');
  fs.writeFileSync(ve.m('fresh.txt'), 'fresh');
  t.deepEqual(run(ve.m('fresh.txt')), expected, 'a new file');
  const last = expected[expected.length - 1];
  const lastTimes = { atimeNs: last[0], mtimeNs: last[1] };
  await privateKeepsTimes(t, ve, { 'when.txt': lastTimes, 'fresh.txt': lastTimes });
});

test('getattr reports the template\'s own nanosecond times for every template object', async (t) => {
  const ve = await mountVe(t);
  const rels = ['file.txt', 'other.txt', 'keep.txt', 'when.txt', 'etc', 'etc/hosts', 'etc/motd', 'link', 'fifo'];
  const mount = Object.fromEntries(rels.map((r) => [r, allTimesOf(ve.m(r))]));
  const template = Object.fromEntries(rels.map((r) => [r, allTimesOf(ve.tp(r))]));
  t.deepEqual(mount, template);
  for (const r of rels) {
    t.not(BigInt(template[r].mtimeNs) % NS, 0n, `${r}: fixture times have nanoseconds`);
  }
  t.is(statText(ve.m('etc/hosts'), '%.9X %.9Y %.9Z'), statText(ve.tp('etc/hosts'), '%.9X %.9Y %.9Z'), 'stat(1) output');
  t.is(sh('ls', ['-l', '--time-style=full-iso', ve.m('etc/hosts')]).split(' ').slice(5, 8).join(' '),
    sh('ls', ['-l', '--time-style=full-iso', ve.tp('etc/hosts')]).split(' ').slice(5, 8).join(' '), 'ls --full-time');
  // Reading the file and the links through the mount changes none of it.
  fs.readFileSync(ve.m('file.txt'));
  fs.readlinkSync(ve.m('link'));
  fs.readdirSync(ve.m('etc'));
  t.deepEqual(Object.fromEntries(rels.map((r) => [r, allTimesOf(ve.m(r))])), template, 'after reading through the mount');
});

test('touch -h -d on a symlink sets the symlink\'s own times, not its target\'s', async (t) => {
  const ve = await mountVe(t);
  const target = allTimesOf(ve.m('file.txt'));
  const tplLink = allTimesOf(ve.tp('link'));
  // (readlink may update a link's atime, by relatime's rules; it comes first.)
  t.is(fs.readlinkSync(ve.m('link')), 'file.txt');
  sh('touch', ['-h', '-d', DATE_H, ve.m('link')]);
  t.deepEqual(timesOf(ve.m('link')), { atimeNs: String(DATE_H_NS), mtimeNs: String(DATE_H_NS) }, 'template symlink');
  t.deepEqual(allTimesOf(ve.m('file.txt')), target, 'its target is untouched');
  t.false(fs.existsSync(ve.p('file.txt')), 'its target was not copied up');
  t.true(lstat(ve.m('link')).isSymbolicLink());
  // A symlink made in the VE, and the -a / -m halves on a template symlink.
  fs.symlinkSync('etc/hosts', ve.m('mylink'));
  sh('touch', ['-h', '-d', DATE_M, ve.m('mylink')]);
  t.deepEqual(timesOf(ve.m('mylink')), { atimeNs: String(DATE_M_NS), mtimeNs: String(DATE_M_NS) }, 'new symlink');
  const motd = timesOf(ve.m('etc/motd'));
  sh('touch', ['-h', '-m', '-d', DATE_M, ve.m('etc/motd')]);
  t.deepEqual(timesOf(ve.m('etc/motd')), { atimeNs: motd.atimeNs, mtimeNs: String(DATE_M_NS) }, 'touch -h -m keeps the link\'s atime');
  t.deepEqual(allTimesOf(ve.tp('link')), tplLink, 'the template symlink keeps its times');
  await privateKeepsTimes(t, ve, {
    link: { atimeNs: String(DATE_H_NS), mtimeNs: String(DATE_H_NS) },
    mylink: { atimeNs: String(DATE_M_NS), mtimeNs: String(DATE_M_NS) },
    'etc/motd': { atimeNs: motd.atimeNs, mtimeNs: String(DATE_M_NS) },
  });
});

/** Metadata copy-ups of template objects; reports which times each kept. */
function copyUpTimes(ve: Ve): Record<string, unknown> {
  const before = Object.fromEntries(['file.txt', 'other.txt', 'keep.txt', 'etc', 'etc/hosts', '.'].map((r) => [r, timesOf(ve.m(r))]));
  fs.chmodSync(ve.m('file.txt'), 0o600);
  fs.chownSync(ve.m('other.txt'), 1000, 1000);
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', ve.m('keep.txt')]);
  fs.appendFileSync(ve.m('etc/hosts'), '::1 localhost\n'); // copies up etc/ too
  const after = (r: string): Times => timesOf(ve.m(r));
  return {
    'chmod keeps mtime': after('file.txt').mtimeNs === before['file.txt'].mtimeNs,
    'chmod keeps atime': after('file.txt').atimeNs === before['file.txt'].atimeNs,
    'chown keeps mtime': after('other.txt').mtimeNs === before['other.txt'].mtimeNs,
    'chown keeps atime': after('other.txt').atimeNs === before['other.txt'].atimeNs,
    'setxattr keeps mtime': after('keep.txt').mtimeNs === before['keep.txt'].mtimeNs,
    'setxattr keeps atime': after('keep.txt').atimeNs === before['keep.txt'].atimeNs,
    'append changes mtime': after('etc/hosts').mtimeNs !== before['etc/hosts'].mtimeNs,
    'parent of a copy-up keeps mtime': after('etc').mtimeNs === before.etc.mtimeNs,
    'parent of a copy-up keeps atime': after('etc').atimeNs === before.etc.atimeNs,
    'root keeps mtime': after('.').mtimeNs === before['.'].mtimeNs,
  };
}

test('copy-up keeps the template\'s times as kernel overlayfs does (file and parent directory)', async (t) => {
  const ref = await mountVe(t, { overlay: true });
  const expected = copyUpTimes(ref);
  await ref.unmount();
  const ve = await mountVe(t);
  const seen = Object.fromEntries(['file.txt', 'other.txt', 'keep.txt', 'etc'].map((r) => [r, timesOf(ve.m(r))]));
  t.deepEqual(copyUpTimes(ve), expected);
  // Nanosecond-exact, not just "changed or not".
  const kept = Object.fromEntries(['file.txt', 'other.txt', 'keep.txt', 'etc'].map((r) => [r, timesOf(ve.m(r))]));
  t.deepEqual(kept, seen, 'chmod/chown/setxattr and a child\'s copy-up keep times to the nanosecond');
  await privateKeepsTimes(t, ve, kept);
});
