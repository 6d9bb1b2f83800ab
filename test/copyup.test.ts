// Copy-up on a real mount: every kind of first change copies the template
// object with all its metadata (and its parents with theirs), keeps holes,
// and two writers racing on one file share a single copy.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { withScratch, mountVefs } from './helpers/mounts.js';

const run = promisify(execFile);

async function setup(t: Parameters<typeof withScratch>[0]) {
  const s = withScratch(t, 'vefs-copyup');
  const tpl = s.dir('template');
  mkdirSync(join(tpl, 'srv/app/conf'), { recursive: true });
  chmodSync(join(tpl, 'srv/app'), 0o750);
  chownSync(join(tpl, 'srv/app'), 1000, 1001);
  utimesSync(join(tpl, 'srv/app'), 1_000_000, 1_100_000.5);
  writeFileSync(join(tpl, 'srv/app/conf/main.cf'), 'setting = 1\n');
  chownSync(join(tpl, 'srv/app/conf/main.cf'), 1000, 1001);
  chmodSync(join(tpl, 'srv/app/conf/main.cf'), 0o4755);
  native.lsetxattr(join(tpl, 'srv/app/conf/main.cf'), 'user.checksum', Buffer.from('abc'), 0);
  native.lsetxattr(join(tpl, 'srv/app/conf/main.cf'), 'security.vefs-test', Buffer.from('label'), 0);
  native.lsetxattr(join(tpl, 'srv/app/conf/main.cf'), 'trusted.vefs-test', Buffer.from([0, 1, 2]), 0);
  native.utimensat(-100, join(tpl, 'srv/app/conf/main.cf'), 1_500_000_000, 111_111_111, 1_600_000_000, 222_222_222, 0);
  const priv = s.dir('private');
  const m = await mountVefs({ templates: [tpl], privateDir: priv, workDir: join(s.base, 'work'), mountpoint: s.dir('mnt'), stateDir: s.stateDir });
  t.teardown(() => m.unmount());
  return { s, tpl, priv, mnt: m.mountpoint, work: join(s.base, 'work') };
}

const meta = (p: string) => {
  const st = lstatSync(p, { bigint: true });
  const x = Object.fromEntries(native.llistxattr(p).sort().map((n) => [n, native.lgetxattr(p, n)!.toString('hex')]));
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeNs: st.mtimeNs, atimeNs: st.atimeNs, xattrs: x };
};

test('setxattr copies up metadata only, with owner, set-id mode, every xattr and nanosecond times; parents too', async (t) => {
  const { tpl, priv, mnt } = await setup(t);
  const rel = 'srv/app/conf/main.cf';
  const before = meta(join(tpl, rel));
  await run('setfattr', ['-n', 'user.new', '-v', 'x', join(mnt, rel)]);
  const after = meta(join(priv, rel));
  t.is(after.mode, before.mode, 'set-uid bit kept');
  t.is(after.uid, before.uid);
  t.is(after.gid, before.gid);
  t.is(after.size, before.size);
  t.is(after.mtimeNs, before.mtimeNs);
  t.is(after.atimeNs, before.atimeNs);
  t.deepEqual(after.xattrs, {
    ...before.xattrs,
    'user.new': Buffer.from('x').toString('hex'),
    'trusted.overlay.metacopy': '',
  }, 'a metacopy file: the data stays in the template');
  t.is(readFileSync(join(mnt, rel), 'utf8'), 'setting = 1\n');
  const dir = meta(join(priv, 'srv/app'));
  const tdir = meta(join(tpl, 'srv/app'));
  t.is(dir.mode, tdir.mode);
  t.is(dir.uid, tdir.uid);
  t.is(dir.gid, tdir.gid);
  t.is(dir.mtimeNs, tdir.mtimeNs, 'a copy-up is not a change to the parent');
  // The first write brings the data up and drops the mark.
  await run('sh', ['-c', `printf 'more\\n' >> '${join(mnt, rel)}'`]);
  t.false('trusted.overlay.metacopy' in meta(join(priv, rel)).xattrs);
  t.is(readFileSync(join(priv, rel), 'utf8'), 'setting = 1\nmore\n');
  t.is(readFileSync(join(mnt, rel), 'utf8'), 'setting = 1\nmore\n');
  t.deepEqual(meta(join(tpl, rel)), before, 'the template is untouched');
});

test('chmod, chown and touch copy up and change only what was asked', async (t) => {
  const { tpl, priv, mnt } = await setup(t);
  const rel = 'srv/app/conf/main.cf';
  const before = meta(join(tpl, rel));
  await run('chmod', ['0640', join(mnt, rel)]);
  t.is(Number(meta(join(priv, rel)).mode & 0o7777n), 0o640);
  t.is(meta(join(priv, rel)).mtimeNs, before.mtimeNs);
  await run('chown', ['2000:2001', join(mnt, rel)]);
  t.is(meta(join(priv, rel)).uid, 2000n);
  await run('touch', ['-m', '-d', '@1700000000.123456789', join(mnt, rel)]);
  t.is(meta(join(priv, rel)).mtimeNs, 1_700_000_000_123_456_789n);
  t.deepEqual(meta(join(tpl, rel)), before);
});

test('a 1 GiB sparse template file copies up with its holes', async (t) => {
  const s = withScratch(t, 'vefs-sparse');
  const tpl = s.dir('template');
  const fd = openSync(join(tpl, 'disk.img'), 'w');
  ftruncateSync(fd, 2 ** 30);
  writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 512 * 2 ** 20);
  closeSync(fd);
  const priv = s.dir('private');
  const m = await mountVefs({ templates: [tpl], privateDir: priv, workDir: join(s.base, 'work'), mountpoint: s.dir('mnt'), stateDir: s.stateDir });
  t.teardown(() => m.unmount());
  const w = openSync(join(m.mountpoint, 'disk.img'), 'r+');
  writeSync(w, Buffer.from('X'), 0, 1, 0);
  closeSync(w);
  const st = statSync(join(priv, 'disk.img'));
  t.is(st.size, 2 ** 30);
  t.true(st.blocks * 512 < 2 ** 20, `private copy uses ${st.blocks * 512} bytes on disk`);
  const r = openSync(join(m.mountpoint, 'disk.img'), 'r');
  const buf = Buffer.alloc(4096);
  const { readSync } = await import('node:fs');
  readSync(r, buf, 0, 4096, 512 * 2 ** 20);
  closeSync(r);
  t.true(buf.every((b) => b === 7));
});

test('two writers racing on one template file share one copy-up', async (t) => {
  const { tpl, priv, mnt, work } = await setup(t);
  const rel = 'srv/app/conf/main.cf';
  const path = join(mnt, rel);
  await Promise.all(Array.from({ length: 8 }, (_, i) =>
    run('sh', ['-c', `printf 'writer ${i}\\n' >> '${path}'`])));
  const lines = readFileSync(join(priv, rel), 'utf8').trim().split('\n');
  t.is(lines[0], 'setting = 1');
  t.deepEqual(lines.slice(1).sort(), Array.from({ length: 8 }, (_, i) => `writer ${i}`));
  t.deepEqual(readdirSync(join(work, 'vefs')), []);
  t.is(readFileSync(join(tpl, rel), 'utf8'), 'setting = 1\n');
});
