// The union rules driven through the node API, with no mount: what a binding
// would call, checked against the private tree's on-disk format.
import test from 'ava';
import { mkdtemp, mkdir, writeFile, symlink, readFile, lstat, rm, utimes, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, C } from '../native/index.js';
import { VefsFs } from '../src/vefs/fs.js';
import { ROOT_CALLER } from '../src/vefs/types.js';

async function fixture(t: { teardown(fn: () => Promise<void>): void }) {
  const base = await mkdtemp(join(tmpdir(), 'vefs-rules-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const tpl = join(base, 'template');
  const priv = join(base, 'private');
  await mkdir(join(tpl, 'etc/conf.d'), { recursive: true });
  await mkdir(join(tpl, 'var/log/apt'), { recursive: true });
  await mkdir(priv);
  await writeFile(join(tpl, 'etc/hostname'), 'template\n', { mode: 0o640 });
  await writeFile(join(tpl, 'etc/conf.d/a'), 'a');
  await writeFile(join(tpl, 'var/log/apt/history'), 'h');
  await writeFile(join(tpl, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await symlink('hostname', join(tpl, 'etc/name'));
  native.lsetxattr(join(tpl, 'etc/hostname'), 'user.origin', Buffer.from('tpl'), 0);
  await utimes(join(tpl, 'etc/hostname'), 1000.123456789, 2000.987654321);
  const fs = new VefsFs({ templates: [tpl], privateDir: priv, workDir: join(base, 'work'), mountpoint: join(base, 'mnt'), binding: 'kernel' });
  t.teardown(async () => fs.close());
  return { fs, tpl, priv, base };
}

const isWhiteout = async (p: string) => {
  const st = await lstat(p);
  return st.isCharacterDevice() && st.rdev === 0;
};

test('reads fall through to the template', async (t) => {
  const { fs, tpl } = await fixture(t);
  const node = fs.resolve('/etc/hostname');
  const attr = fs.getattr(node);
  const real = await lstat(join(tpl, 'etc/hostname'), { bigint: true });
  t.is(attr.ino, real.ino);
  t.is(attr.mtimeNs, real.mtimeNs);
  t.is(fs.readlink(fs.resolve('/etc/name')), 'hostname');
  t.deepEqual(fs.readdir(fs.resolve('/etc')).map((e) => e.name).sort(), ['conf.d', 'hostname', 'name', 'passwd']);
  t.throws(() => fs.resolve('/etc/missing'), { code: 'ENOENT' });
  t.throws(() => fs.resolve('/etc/hostname/x'), { code: 'ENOTDIR' });
});

test('a write copies up with every piece of metadata and keeps the inode number', async (t) => {
  const { fs, tpl, priv } = await fixture(t);
  const node = fs.resolve('/etc/hostname');
  const ino = fs.getattr(node).ino;
  const h = await fs.open(node, C.O_WRONLY);
  await fs.write(h, Buffer.from('ve1\n'), 4, 0);
  await fs.release(h);
  const up = await lstat(join(priv, 'etc/hostname'), { bigint: true });
  const lo = await lstat(join(tpl, 'etc/hostname'), { bigint: true });
  t.is(up.mode, lo.mode);
  t.is(up.uid, lo.uid);
  t.is(native.lgetxattr(join(priv, 'etc/hostname'), 'user.origin')?.toString(), 'tpl');
  t.is(await readFile(join(priv, 'etc/hostname'), 'utf8'), 've1\nlate\n');
  t.is(await readFile(join(tpl, 'etc/hostname'), 'utf8'), 'template\n');
  t.is(fs.getattr(fs.resolve('/etc/hostname')).ino, ino);
  // The parent came up with its own metadata.
  const etc = await lstat(join(tpl, 'etc'), { bigint: true });
  const etcUp = await lstat(join(priv, 'etc'), { bigint: true });
  t.is(etcUp.mode, etc.mode);
  t.deepEqual(await readdir(join(priv, 'etc')), ['hostname']);
});

test('O_TRUNC and utimens copy up; times land to the nanosecond', async (t) => {
  const { fs, priv } = await fixture(t);
  const h = await fs.open(fs.resolve('/etc/passwd'), C.O_WRONLY | C.O_TRUNC);
  await fs.release(h);
  t.is((await lstat(join(priv, 'etc/passwd'))).size, 0);
  await fs.utimens(fs.resolve('/etc/conf.d/a'), { sec: 0, nsec: C.UTIME_OMIT }, { sec: 1234567890, nsec: 123456789 });
  const st = await lstat(join(priv, 'etc/conf.d/a'), { bigint: true });
  t.is(st.mtimeNs, 1234567890123456789n);
});

test('concurrent writers share one copy-up', async (t) => {
  const { fs, priv } = await fixture(t);
  const node = fs.resolve('/etc/passwd');
  const [a, b] = await Promise.all([fs.open(node, C.O_RDWR), fs.open(node, C.O_RDWR)]);
  t.is(native.fstat(a.fd).ino, native.fstat(b.fd).ino);
  await Promise.all([fs.release(a), fs.release(b)]);
  t.deepEqual((await readdir(join(priv, 'etc'))).sort(), ['passwd']);
  t.deepEqual(await readdir(join(fs.config.workDir, 'vefs')), []);
});

test('unlink leaves a whiteout only where a template has the name', async (t) => {
  const { fs, priv } = await fixture(t);
  const etc = fs.resolve('/etc');
  await fs.unlink(etc, 'passwd');
  t.true(await isWhiteout(join(priv, 'etc/passwd')));
  t.throws(() => fs.lookup(etc, 'passwd'), { code: 'ENOENT' });
  t.false(fs.readdir(etc).some((e) => e.name === 'passwd'));
  const h = await fs.create(etc, 'new', 0o644, C.O_WRONLY, ROOT_CALLER);
  await fs.release(h);
  await fs.unlink(etc, 'new');
  await t.throwsAsync(lstat(join(priv, 'etc/new')), { code: 'ENOENT' });
  // A new file over a whiteout replaces it.
  await fs.release(await fs.create(etc, 'passwd', 0o600, C.O_WRONLY, ROOT_CALLER));
  t.true((await lstat(join(priv, 'etc/passwd'))).isFile());
  t.is(fs.getattr(fs.resolve('/etc/passwd')).size, 0);
});

test('rmdir of an emptied merged directory, then mkdir makes it opaque', async (t) => {
  const { fs, priv } = await fixture(t);
  const log = fs.resolve('/var/log');
  await t.throwsAsync(fs.rmdir(log, 'apt'), { code: 'ENOTEMPTY' });
  await fs.unlink(fs.resolve('/var/log/apt'), 'history');
  await fs.rmdir(log, 'apt');
  t.true(await isWhiteout(join(priv, 'var/log/apt')));
  await fs.mkdir(log, 'apt', 0o755, ROOT_CALLER);
  t.is(native.lgetxattr(join(priv, 'var/log/apt'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.deepEqual(fs.readdir(fs.resolve('/var/log/apt')), []);
  t.throws(() => fs.getxattr(fs.resolve('/var/log/apt'), 'trusted.overlay.opaque'), { code: 'EOPNOTSUPP' });
  t.deepEqual(fs.listxattr(fs.resolve('/var/log/apt')), []);
});

test('renaming a template directory redirects it and keeps its inode number', async (t) => {
  const { fs, priv } = await fixture(t);
  const ino = fs.getattr(fs.resolve('/var/log')).ino;
  await fs.rename(fs.resolve('/var'), 'log', fs.resolve('/'), 'oldlog');
  t.is(native.lgetxattr(join(priv, 'oldlog'), 'trusted.overlay.redirect')?.toString(), '/var/log');
  t.true(await isWhiteout(join(priv, 'var/log')));
  t.is(fs.getattr(fs.resolve('/oldlog')).ino, ino);
  const h = await fs.open(fs.resolve('/oldlog/apt/history'), C.O_RDONLY);
  const buf = Buffer.alloc(8);
  t.is(await fs.read(h, buf, 8, 0), 1);
  await fs.release(h);
  t.throws(() => fs.resolve('/var/log'), { code: 'ENOENT' });
  // And back again over the whiteout.
  await fs.rename(fs.resolve('/'), 'oldlog', fs.resolve('/var'), 'log');
  t.is(fs.readdir(fs.resolve('/var/log/apt')).length, 1);
  t.throws(() => fs.resolve('/oldlog'), { code: 'ENOENT' });
});

test('rename rules: flags, types and emptiness', async (t) => {
  const { fs } = await fixture(t);
  const etc = fs.resolve('/etc');
  const root = fs.resolve('/');
  await t.throwsAsync(fs.rename(etc, 'passwd', etc, 'hostname', C.RENAME_NOREPLACE), { code: 'EEXIST' });
  await t.throwsAsync(fs.rename(etc, 'passwd', root, 'var'), { code: 'EISDIR' });
  await t.throwsAsync(fs.rename(root, 'var', etc, 'passwd'), { code: 'ENOTDIR' });
  await t.throwsAsync(fs.rename(root, 'var', root, 'etc'), { code: 'ENOTEMPTY' });
  await t.throwsAsync(fs.rename(root, 'var', fs.resolve('/var/log'), 'x'), { code: 'EINVAL' });
  await t.throwsAsync(fs.rename(etc, 'nothing', etc, 'x', C.RENAME_EXCHANGE), { code: 'ENOENT' });
  await fs.rename(etc, 'passwd', etc, 'hostname', C.RENAME_EXCHANGE);
  const read = async (p: string) => {
    const h = await fs.open(fs.resolve(p), C.O_RDONLY);
    const b = Buffer.alloc(64);
    const n = await fs.read(h, b, 64, 0);
    await fs.release(h);
    return b.subarray(0, n).toString();
  };
  t.is(await read('/etc/hostname'), 'root:x:0:0::/root:/bin/sh\n');
  t.is(await read('/etc/passwd'), 'template\n');
  await fs.rename(etc, 'conf.d', etc, 'conf.e');
  t.is(await read('/etc/conf.e/a'), 'a');
});

test('hard links to a template file copy it up once and count links', async (t) => {
  const { fs, priv } = await fixture(t);
  const src = fs.resolve('/etc/passwd');
  const linked = await fs.link(src, fs.resolve('/'), 'passwd.link');
  t.is(fs.getattr(linked).nlink, 2);
  t.is(fs.getattr(fs.resolve('/etc/passwd')).ino, fs.getattr(linked).ino);
  t.is((await lstat(join(priv, 'etc/passwd'))).ino, (await lstat(join(priv, 'passwd.link'))).ino);
});

test('a metadata change makes a metacopy file that follows its data through a rename', async (t) => {
  const { fs, priv } = await fixture(t);
  await fs.chmod(fs.resolve('/etc/hostname'), 0o600);
  t.is((await lstat(join(priv, 'etc/hostname'))).blocks, 0);
  t.not(native.lgetxattr(join(priv, 'etc/hostname'), 'trusted.overlay.metacopy'), null);
  await fs.rename(fs.resolve('/etc'), 'hostname', fs.resolve('/'), 'moved');
  t.is(native.lgetxattr(join(priv, 'moved'), 'trusted.overlay.redirect')?.toString(), '/etc/hostname');
  const h = await fs.open(fs.resolve('/moved'), C.O_RDONLY);
  const buf = Buffer.alloc(32);
  const n = await fs.read(h, buf, 32, 0);
  await fs.release(h);
  t.is(buf.subarray(0, n).toString(), 'template\n');
  t.is(fs.getattr(fs.resolve('/moved')).mode & 0o7777, 0o600);
  // Writing fills in the data and drops both marks.
  const w = await fs.open(fs.resolve('/moved'), C.O_WRONLY | C.O_APPEND);
  await fs.write(w, Buffer.from('x'), 1, 9);
  await fs.release(w);
  t.is(await readFile(join(priv, 'moved'), 'utf8'), 'template\nx');
  t.deepEqual(native.llistxattr(join(priv, 'moved')).filter((x) => x.startsWith('trusted.overlay.')), []);
});

test('filling in a metacopy file keeps file capabilities, set-id bits and times', async (t) => {
  const { fs, tpl, priv } = await fixture(t);
  const file = join(tpl, 'etc/passwd');
  // VFS_CAP_REVISION_2 with the effective flag, permitting CAP_NET_RAW.
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  native.lsetxattr(file, 'security.capability', cap, 0);
  native.fchmodat(-100, file, 0o4755, 0);
  await fs.utimens(fs.resolve('/etc/passwd'), { sec: 1_000_000_000, nsec: 5 }, { sec: 1_000_000_001, nsec: 7 });
  t.not(native.lgetxattr(join(priv, 'etc/passwd'), 'trusted.overlay.metacopy'), null);
  const h = await fs.open(fs.resolve('/etc/passwd'), C.O_RDONLY);
  await fs.release(h);
  const w = await fs.open(fs.resolve('/etc/passwd'), C.O_WRONLY);
  await fs.release(w);
  const st = await lstat(join(priv, 'etc/passwd'), { bigint: true });
  t.is(Number(st.mode & 0o7777n), 0o4755);
  t.is(st.mtimeNs, 1_000_000_001_000_000_007n);
  t.deepEqual(native.lgetxattr(join(priv, 'etc/passwd'), 'security.capability'), cap);
  t.is(await readFile(join(priv, 'etc/passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
});
