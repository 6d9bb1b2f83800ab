// POSIX features a VE relies on, checked on a VEFS mount over a small
// template: special files, xattrs and ACLs, statfs, fsync, truncate, append,
// sparse and large files, long names, big directories, hard links, inode
// numbers, and permissions for a non-root user. Each test has its own
// scratch space, template, private tree and VEFS server.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mountOverlay, mountVefs, withScratch, type Mounted, type Scratch } from './helpers/mounts.js';
import { runWorkloadAs, type Step } from './helpers/workload.js';

const USER = { uid: 1000, gid: 1000 };
const GiB = 1024 ** 3;

// ---------------------------------------------------------------- helpers

function sh(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`);
  }
}

/** Runs a python3 script with extra argv; its stdout parsed as JSON. */
function py<T = unknown>(script: string, ...args: string[]): T {
  return JSON.parse(sh('python3', ['-c', script, ...args])) as T;
}

/** The errno code a synchronous call fails with, or 'ok'. */
function errnoOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** major:minor of a dev_t, glibc's encoding. */
function majorMinor(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function lstat(p: string): fs.BigIntStats {
  return fs.lstatSync(p, { bigint: true });
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A whiteout in an overlayfs upper dir: char device 0:0. */
function isWhiteout(st: fs.BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

/** Every xattr of one path (never following a symlink), names sorted, values hex. */
function xattrsOf(p: string, dropOverlay = true): Record<string, string> {
  const text = sh('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', '-h', '--', p]);
  const all: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# file: ')) continue;
    const eq = line.indexOf('=');
    // getfattr prints an empty value as a bare name, any other as 0x…
    all[eq < 0 ? line : line.slice(0, eq)] = eq < 0 ? '' : line.slice(eq + 1).replace(/^0x/, '');
  }
  const out: Record<string, string> = {};
  for (const name of Object.keys(all).sort()) {
    if (!(dropOverlay && name.startsWith('trusted.overlay.'))) out[name] = all[name];
  }
  return out;
}

const hex = (s: string): string => Buffer.from(s).toString('hex');

// ------------------------------------------------------------- the fixture

/**
 * The template every test starts from:
 *   README.txt (0644), secret.txt (0600), root.txt (0644)
 *   etc/ hosts, motd -> ../README.txt
 *   data/xattr.txt with user.color=blue and security.label=template
 *   pub/ (1777)
 *   links/ one.txt (1 name), two-a and two-b (2 names of one file)
 *   fifo, dangling -> nowhere, abs -> /etc/hostname
 *   sparse.img: 1 GiB, all hole but "tail" at the end
 *   many/ t0 t1 t2
 *   dir/sub/file.txt
 */
function buildTemplate(tpl: string): void {
  const w = (rel: string, data: string, mode = 0o644): void => {
    fs.writeFileSync(path.join(tpl, rel), data, { mode });
    fs.chmodSync(path.join(tpl, rel), mode);
  };
  const d = (rel: string, mode = 0o755): void => {
    fs.mkdirSync(path.join(tpl, rel), { recursive: true });
    fs.chmodSync(path.join(tpl, rel), mode);
  };
  w('README.txt', 'readme\n');
  w('secret.txt', 'secret\n', 0o600);
  w('root.txt', 'root owned\n');
  d('etc');
  w('etc/hosts', '127.0.0.1 localhost\n');
  fs.symlinkSync('../README.txt', path.join(tpl, 'etc/motd'));
  d('data');
  w('data/xattr.txt', 'has xattrs\n');
  sh('setfattr', ['-n', 'user.color', '-v', 'blue', path.join(tpl, 'data/xattr.txt')]);
  sh('setfattr', ['-n', 'security.label', '-v', 'template', path.join(tpl, 'data/xattr.txt')]);
  d('pub', 0o1777);
  d('links');
  w('links/one.txt', 'one\n');
  w('links/two-a', 'two\n');
  fs.linkSync(path.join(tpl, 'links/two-a'), path.join(tpl, 'links/two-b'));
  sh('mkfifo', [path.join(tpl, 'fifo')]);
  fs.symlinkSync('nowhere', path.join(tpl, 'dangling'));
  fs.symlinkSync('/etc/hostname', path.join(tpl, 'abs'));
  const fd = fs.openSync(path.join(tpl, 'sparse.img'), 'w', 0o644);
  fs.ftruncateSync(fd, GiB);
  fs.writeSync(fd, 'tail', GiB - 4);
  fs.closeSync(fd);
  d('many');
  for (const n of ['t0', 't1', 't2']) w(`many/${n}`, n);
  d('dir/sub');
  w('dir/sub/file.txt', 'deep file\n');
}

interface Ve {
  scratch: Scratch;
  tpl: string;
  priv: string;
  work: string;
  mnt: string;
  /** Path on the mount. */
  m(rel: string): string;
  /** Path in the private tree. */
  p(rel: string): string;
  /** Path in the template. */
  tp(rel: string): string;
  unmount(): Promise<void>;
}

interface VeOptions {
  /** Fills the private tree before the mount. */
  prepare?: (priv: string) => void;
  /** Mount kernel overlayfs instead of VEFS, for a reference. */
  overlay?: boolean;
  /** Use this template instead of building one. */
  template?: string;
  label?: string;
}

/** A template (the fixture unless given), a private tree and a mount of them; torn down by the scratch. */
async function mountVe(t: ExecutionContext, opts: VeOptions = {}): Promise<Ve> {
  const scratch = withScratch(t, opts.label ?? 'vefs-posix');
  const tpl = opts.template ?? scratch.dir('template');
  if (opts.template === undefined) buildTemplate(tpl);
  const priv = scratch.dir('private');
  const work = scratch.dir('work');
  const mnt = scratch.dir('mnt');
  opts.prepare?.(priv);
  const mo = { templates: [tpl], privateDir: priv, workDir: work, mountpoint: mnt, stateDir: scratch.stateDir };
  const mounted: Mounted = opts.overlay ? await mountOverlay(mo) : await mountVefs(mo);
  let up = true;
  return {
    scratch, tpl, priv, work, mnt,
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

// ---------------------------------------------------------------- symlinks

test('symlinks: create, readlink, lstat of template symlinks, follow', async (t) => {
  const ve = await mountVe(t);
  fs.symlinkSync('etc/hosts', ve.m('rel-link'));
  fs.symlinkSync('/etc/hostname', ve.m('abs-link'));
  fs.symlinkSync('does/not/exist', ve.m('dead-link'));
  const weird = 'a target with spaces, ünïcödé and\nnewline';
  fs.symlinkSync(weird, ve.m('weird-link'));

  t.is(fs.readlinkSync(ve.m('rel-link')), 'etc/hosts');
  t.is(fs.readlinkSync(ve.m('abs-link')), '/etc/hostname');
  t.is(fs.readlinkSync(ve.m('dead-link')), 'does/not/exist');
  t.is(fs.readlinkSync(ve.m('weird-link')), weird);
  t.is(fs.readFileSync(ve.m('rel-link'), 'utf8'), '127.0.0.1 localhost\n', 'a relative link is followed inside the mount');
  t.is(errnoOf(() => fs.statSync(ve.m('dead-link'))), 'ENOENT');
  const st = lstat(ve.m('weird-link'));
  t.true(st.isSymbolicLink());
  t.is(st.size, BigInt(Buffer.byteLength(weird)), 'a symlink\'s size is its target\'s length');

  // Template symlinks.
  for (const [rel, target] of [['etc/motd', '../README.txt'], ['dangling', 'nowhere'], ['abs', '/etc/hostname']]) {
    const m = lstat(ve.m(rel));
    const tp = lstat(ve.tp(rel));
    t.true(m.isSymbolicLink(), `${rel} is a symlink on the mount`);
    t.is(fs.readlinkSync(ve.m(rel)), target);
    t.is(m.size, BigInt(target.length), `${rel} size`);
    t.deepEqual([m.uid, m.gid, m.mtimeNs, m.mode], [tp.uid, tp.gid, tp.mtimeNs, tp.mode], `${rel} lstat matches the template's`);
  }
  t.is(fs.readFileSync(ve.m('etc/motd'), 'utf8'), 'readme\n');
  t.true(fs.statSync(ve.m('etc/motd')).isFile(), 'stat follows a template symlink');

  // New links are in the private tree; reading template links copies nothing up.
  t.is(fs.readlinkSync(ve.p('rel-link')), 'etc/hosts');
  t.is(fs.readlinkSync(ve.p('weird-link')), weird);
  t.false(exists(ve.p('etc/motd')), 'reading a template symlink does not copy it up');
  // O_NOFOLLOW on a symlink.
  t.is(errnoOf(() => fs.openSync(ve.m('etc/motd'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)), 'ELOOP');
});

// ---------------------------------------------------------- special files

test('FIFO: mkfifo on the mount and the template FIFO carry data', async (t) => {
  const ve = await mountVe(t);
  sh('mkfifo', ['-m', '0640', ve.m('newfifo')]);
  t.true(lstat(ve.m('newfifo')).isFIFO());
  t.is(Number(lstat(ve.m('newfifo')).mode & 0o7777n), 0o640);
  t.true(lstat(ve.p('newfifo')).isFIFO(), 'the private tree holds a FIFO');
  t.true(lstat(ve.m('fifo')).isFIFO(), 'the template FIFO is a FIFO on the mount');
  // O_RDWR on a FIFO never blocks on Linux: write then read through one descriptor.
  const got = py<string[]>(`
import os, sys, json
out = []
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b'through ' + os.path.basename(p).encode())
    out.append(os.read(fd, 100).decode())
    os.close(fd)
print(json.dumps(out))`, ve.m('newfifo'), ve.m('fifo'));
  t.deepEqual(got, ['through newfifo', 'through fifo']);
  t.false(exists(ve.p('fifo')), 'using the template FIFO does not copy it up');
});

test('unix socket: bind in the mount, connect and talk through it', async (t) => {
  const ve = await mountVe(t);
  const got = py<{ msg: string; isSock: boolean }>(`
import json, os, socket, stat, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(p)
s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(p)
a, _ = s.accept()
c.sendall(b'hello over vefs')
msg = a.recv(100).decode()
print(json.dumps({'msg': msg, 'isSock': stat.S_ISSOCK(os.lstat(p).st_mode)}))`, ve.m('dir/sock'));
  t.deepEqual(got, { msg: 'hello over vefs', isSock: true });
  t.true(lstat(ve.p('dir/sock')).isSocket(), 'the private tree holds a socket');
});

test('device nodes: mknod char and block with the right rdev', async (t) => {
  const ve = await mountVe(t);
  const nodes: Array<[string, 'c' | 'b', number, number]> = [
    ['null-like', 'c', 1, 3], ['tty-like', 'c', 4, 64], ['disk', 'b', 8, 3], ['big', 'c', 4095, 1048575], ['bigblock', 'b', 259, 70000],
  ];
  for (const [name, kind, major, minor] of nodes) sh('mknod', ['-m', '0620', ve.m(name), kind, String(major), String(minor)]);
  for (const [name, kind, major, minor] of nodes) {
    for (const where of [ve.m(name), ve.p(name)]) {
      const st = lstat(where);
      t.is(kind === 'c' ? st.isCharacterDevice() : st.isBlockDevice(), true, `${where} is a ${kind} device`);
      t.is(majorMinor(st.rdev), `${major}:${minor}`, `${where} rdev`);
      t.is(Number(st.mode & 0o7777n), 0o620, `${where} mode`);
    }
    t.is(sh('stat', ['-c', '%Hr:%Lr', ve.m(name)]).trim(), `${major}:${minor}`, `stat(1) shows ${name}'s numbers`);
  }
});

// ------------------------------------------------------------------ xattrs

test('xattrs: user.* and security.* set, get, list, remove on a new file', async (t) => {
  const ve = await mountVe(t);
  const f = ve.m('new.txt');
  fs.writeFileSync(f, 'new\n');
  sh('setfattr', ['-n', 'user.one', '-v', 'first', f]);
  sh('setfattr', ['-n', 'user.bin', '-v', '0x00ff0102', f]);
  sh('setfattr', ['-n', 'user.empty', f]);
  sh('setfattr', ['-n', 'security.vefs', '-v', 'sec', f]);
  t.deepEqual(xattrsOf(f), {
    'security.vefs': hex('sec'), 'user.bin': '00ff0102', 'user.empty': '', 'user.one': hex('first'),
  });
  t.is(sh('getfattr', ['--only-values', '-n', 'user.one', f]), 'first');
  // Replace, then remove.
  sh('setfattr', ['-n', 'user.one', '-v', 'second', f]);
  sh('setfattr', ['-x', 'user.bin', f]);
  sh('setfattr', ['-x', 'security.vefs', f]);
  t.deepEqual(xattrsOf(f), { 'user.empty': '', 'user.one': hex('second') });
  t.regex(t.throws(() => sh('getfattr', ['-n', 'user.bin', f]))!.message, /No such attribute/);
  t.regex(t.throws(() => sh('setfattr', ['-x', 'user.nope', f]))!.message, /No such attribute/);
  // A large value (64 KiB is the VFS maximum; ext4 keeps up to a block, so stay below 4 KiB).
  const big = 'v'.repeat(3000);
  sh('setfattr', ['-n', 'user.big', '-v', big, f]);
  t.is(sh('getfattr', ['--only-values', '-n', 'user.big', f]), big);
  // The private tree holds exactly what the mount shows.
  t.deepEqual(xattrsOf(ve.p('new.txt')), xattrsOf(f));
  // overlayfs's own namespace is not the VE's.
  t.regex(t.throws(() => sh('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', f]))!.message, /Operation not supported/);
});

test('xattrs: set, get, list, remove on a template file leaves the template unchanged', async (t) => {
  const ve = await mountVe(t);
  const before = { file: xattrsOf(ve.tp('data/xattr.txt')), dir: xattrsOf(ve.tp('etc')) };
  t.deepEqual(before.file, { 'security.label': hex('template'), 'user.color': hex('blue') });
  const f = ve.m('data/xattr.txt');
  t.deepEqual(xattrsOf(f), before.file, 'the mount shows the template file\'s xattrs');
  t.is(sh('getfattr', ['--only-values', '-n', 'user.color', f]), 'blue');

  sh('setfattr', ['-n', 'user.color', '-v', 'red', f]);
  sh('setfattr', ['-n', 'user.added', '-v', 'yes', f]);
  sh('setfattr', ['-n', 'security.added', '-v', 'sec', f]);
  sh('setfattr', ['-x', 'security.label', f]);
  const expected = { 'security.added': hex('sec'), 'user.added': hex('yes'), 'user.color': hex('red') };
  t.deepEqual(xattrsOf(f), expected);
  t.deepEqual(xattrsOf(ve.p('data/xattr.txt')), expected, 'the private copy carries them');
  t.is(fs.readFileSync(f, 'utf8'), 'has xattrs\n', 'copy-up kept the content');

  // Removing the last template xattr of another file, and xattrs on a template directory.
  sh('setfattr', ['-n', 'user.dir', '-v', 'd', ve.m('etc')]);
  t.deepEqual(xattrsOf(ve.m('etc')), { 'user.dir': hex('d') });
  t.deepEqual(fs.readdirSync(ve.m('etc')).sort(), ['hosts', 'motd'], 'the directory still merges after its copy-up');

  t.deepEqual(xattrsOf(ve.tp('data/xattr.txt')), before.file, 'template file xattrs unchanged');
  t.deepEqual(xattrsOf(ve.tp('etc')), before.dir, 'template dir xattrs unchanged');
  t.is(fs.readFileSync(ve.tp('data/xattr.txt'), 'utf8'), 'has xattrs\n');
});

// -------------------------------------------------------------------- ACLs

// The kernel enforces no POSIX ACLs on this binding (no FUSE_POSIX_ACL);
// these tests check storage: what setfacl writes, getfacl reads back exactly
// as on the private tree's own filesystem.
const ACL_STEPS: string[][] = [
  ['-m', `u:${USER.uid}:rwx,g:${USER.gid}:r-x,m::rwx`],
  ['-m', 'u:2000:r--,o::---'],
  ['-x', 'u:2000'],
];
const DEFAULT_ACL_STEPS: string[][] = [
  ['-d', '-m', `u:${USER.uid}:r-x,g::r-x,o::---`],
  ['-m', `u:${USER.uid}:rwx`],
];

function applyAcl(p: string, steps: string[][]): string[] {
  const seen: string[] = [];
  for (const s of steps) {
    sh('setfacl', [...s, p]);
    seen.push(sh('getfacl', ['-n', '--omit-header', '-p', p]));
  }
  return seen;
}

test('POSIX ACLs: setfacl/getfacl on template and new files, default ACL on dirs, stored exactly', async (t) => {
  const ve = await mountVe(t);
  // The reference: the same steps on plain files on the private tree's filesystem.
  const ref = ve.scratch.dir('ref');
  fs.writeFileSync(path.join(ref, 'file'), 'x');
  fs.chmodSync(path.join(ref, 'file'), 0o644);
  fs.mkdirSync(path.join(ref, 'dir'), 0o755);
  fs.chmodSync(path.join(ref, 'dir'), 0o755);
  const refFile = applyAcl(path.join(ref, 'file'), ACL_STEPS);
  const refDir = applyAcl(path.join(ref, 'dir'), DEFAULT_ACL_STEPS);
  const refFileMode = fs.statSync(path.join(ref, 'file')).mode;
  const refDirMode = fs.statSync(path.join(ref, 'dir')).mode;
  const tplBefore = sh('getfacl', ['-n', '-p', ve.tp('README.txt'), ve.tp('etc')]);

  fs.writeFileSync(ve.m('new.txt'), 'x');
  fs.chmodSync(ve.m('new.txt'), 0o644);
  fs.mkdirSync(ve.m('newdir'), 0o755);
  fs.chmodSync(ve.m('newdir'), 0o755);
  for (const [rel, steps, expected, mode] of [
    ['new.txt', ACL_STEPS, refFile, refFileMode], ['README.txt', ACL_STEPS, refFile, refFileMode],
    ['newdir', DEFAULT_ACL_STEPS, refDir, refDirMode], ['etc', DEFAULT_ACL_STEPS, refDir, refDirMode],
  ] as const) {
    t.deepEqual(applyAcl(ve.m(rel), steps as string[][]), expected as string[], `${rel}: getfacl after each setfacl`);
    t.is(fs.statSync(ve.m(rel)).mode, mode, `${rel}: mode bits follow the ACL mask as on the backing filesystem`);
    t.is(sh('getfacl', ['-n', '--omit-header', ve.p(rel)]), (expected as string[])[(expected as string[]).length - 1], `${rel}: the private tree stores the ACL`);
    t.regex(sh('ls', ['-ld', ve.m(rel)]), /^\S{10}\+ /, `${rel}: ls shows the ACL mark`);
  }
  // The ACL xattrs themselves, byte for byte.
  const sysAcl = (p: string): Record<string, string> =>
    Object.fromEntries(Object.entries(xattrsOf(p)).filter(([k]) => k.startsWith('system.posix_acl')));
  t.deepEqual(sysAcl(ve.m('README.txt')), sysAcl(path.join(ref, 'file')));
  t.deepEqual(sysAcl(ve.m('etc')), sysAcl(path.join(ref, 'dir')));
  // setfacl -b removes them again.
  sh('setfacl', ['-b', ve.m('README.txt')]);
  sh('setfacl', ['-b', path.join(ref, 'file')]);
  t.is(sh('getfacl', ['-n', '--omit-header', ve.m('README.txt')]), sh('getfacl', ['-n', '--omit-header', path.join(ref, 'file')]));
  t.deepEqual(sysAcl(ve.m('README.txt')), {});
  t.is(sh('getfacl', ['-n', '-p', ve.tp('README.txt'), ve.tp('etc')]), tplBefore, 'the template has no ACLs');
});

// ------------------------------------------------------------------ statfs

test('statfs: stat -f and df of the mount report the private tree\'s filesystem', async (t) => {
  const ve = await mountVe(t);
  // Block size, fundamental block size, total blocks, total inodes, max name length.
  const fields = (p: string): string => sh('stat', ['-f', '-c', '%s %S %b %c %l', p]).trim();
  t.is(fields(ve.mnt), fields(ve.priv));
  t.is(fields(ve.m('dir/sub')), fields(ve.priv), 'statfs of any path in the mount');
  const size = (p: string): string => sh('df', ['-B1', '--output=size', p]).trim().split('\n')[1].trim();
  t.is(size(ve.mnt), size(ve.priv), 'df size');
});

/** A VE whose private tree is on a tmpfs of its own (tmpfs mount options given), unmounted after the test. */
async function mountOnOwnTmpfs(t: ExecutionContext, label: string, options: string):
  Promise<{ mnt: string; priv: string; unmount(): Promise<void> }> {
  const scratch = withScratch(t, label);
  const tpl = scratch.dir('template');
  fs.writeFileSync(path.join(tpl, 'a'), 'a');
  const own = scratch.dir('own');
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', own]);
  let mounted: Mounted | undefined;
  // Registered after withScratch's teardown, so it runs first: VEFS off the tmpfs, then the tmpfs.
  t.teardown(async () => {
    try { await mounted?.unmount(); } catch { /* the scratch cleanup unmounts it lazily */ }
    execFileSync('umount', ['-l', own]);
  });
  const priv = path.join(own, 'private');
  const mnt = scratch.dir('mnt');
  mounted = await mountVefs({ templates: [tpl], privateDir: priv, workDir: path.join(own, 'work'), mountpoint: mnt, stateDir: scratch.stateDir });
  const unmount = async (): Promise<void> => {
    await mounted?.unmount();
    mounted = undefined;
  };
  return { mnt, priv, unmount };
}

test('statfs: free space through the mount moves with the private tree\'s filesystem', async (t) => {
  // On a tmpfs of its own, so that no other process (other tests, other jobs on the host) moves the numbers.
  const { mnt, priv } = await mountOnOwnTmpfs(t, 'vefs-posix-free', 'size=512M');
  const free = (p: string): number => Number(sh('stat', ['-f', '-c', '%f', p]).trim());
  const bsize = Number(sh('stat', ['-f', '-c', '%S', mnt]).trim());
  const before = free(mnt);
  t.is(before, free(priv));
  fs.writeFileSync(path.join(mnt, 'fill.bin'), Buffer.alloc(256 << 20, 1));
  const after = free(mnt);
  t.is(before - after, (256 << 20) / bsize, `free blocks dropped by 256 MiB (before ${before}, after ${after})`);
  t.is(after, free(priv), 'and match the private tree\'s');
  fs.unlinkSync(path.join(mnt, 'fill.bin'));
  t.is(free(mnt), before);
});

test('statfs of a private filesystem with more than 2^32 blocks and inodes (a 20 TiB tmpfs)', async (t) => {
  const { mnt, priv, unmount } = await mountOnOwnTmpfs(t, 'vefs-posix-bigfs', 'size=20T,nr_inodes=5000000000');
  const fields = (p: string): Record<string, string> => {
    const v = sh('stat', ['-f', '-c', '%S %b %f %a %c %d', p]).trim().split(' ');
    // Sizes in bytes, so a binding may scale the block size without being wrong.
    const bs = BigInt(v[0]);
    return {
      total: String(BigInt(v[1]) * bs), free: String(BigInt(v[2]) * bs), avail: String(BigInt(v[3]) * bs),
      inodes: v[4], freeInodes: v[5],
    };
  };
  const expected = fields(priv);
  t.is(expected.total, String(20n * 1024n ** 4n), 'the reference really is 20 TiB');
  t.deepEqual(fields(mnt), expected);
  const size = (p: string): string => sh('df', ['-B1', '--output=size', p]).trim().split('\n')[1].trim();
  t.is(size(mnt), size(priv), 'df size');
  await unmount();
});

// ------------------------------------------------------------------- fsync

test('fsync and fdatasync work on new, template and read-only descriptors', async (t) => {
  const ve = await mountVe(t);
  const got = py<string[]>(`
import json, os, sys
new, tpl = sys.argv[1], sys.argv[2]
out = []
fd = os.open(new, os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'synced\\n'); os.fsync(fd); os.fdatasync(fd); os.close(fd)
out.append(open(new).read())
fd = os.open(tpl, os.O_WRONLY | os.O_APPEND)
os.write(fd, b'more\\n'); os.fsync(fd); os.fdatasync(fd); os.close(fd)
out.append(open(tpl).read())
fd = os.open(sys.argv[3], os.O_RDONLY)
os.fsync(fd); os.close(fd)
out.append('ro ok')
d = os.open(sys.argv[4], os.O_RDONLY | os.O_DIRECTORY)
os.fsync(d); os.close(d)
out.append('dir ok')
print(json.dumps(out))`, ve.m('synced.txt'), ve.m('etc/hosts'), ve.m('README.txt'), ve.m('etc'));
  t.deepEqual(got, ['synced\n', '127.0.0.1 localhost\nmore\n', 'ro ok', 'dir ok']);
  t.is(fs.readFileSync(ve.p('synced.txt'), 'utf8'), 'synced\n');
  t.is(fs.readFileSync(ve.p('etc/hosts'), 'utf8'), '127.0.0.1 localhost\nmore\n');
  t.is(fs.readFileSync(ve.tp('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n');
});

// ---------------------------------------------------------------- truncate

test('truncate: shrink and grow template and new files, by path and by descriptor', async (t) => {
  const ve = await mountVe(t);
  fs.truncateSync(ve.m('README.txt'), 3);
  t.is(fs.readFileSync(ve.m('README.txt'), 'utf8'), 'rea');
  fs.truncateSync(ve.m('README.txt'), 8);
  t.deepEqual(fs.readFileSync(ve.m('README.txt')), Buffer.from('rea\0\0\0\0\0'));
  t.is(fs.statSync(ve.m('README.txt')).size, 8);

  sh('truncate', ['-s', '0', ve.m('etc/hosts')]);
  t.is(fs.statSync(ve.m('etc/hosts')).size, 0);
  t.is(fs.readFileSync(ve.m('etc/hosts'), 'utf8'), '');

  fs.writeFileSync(ve.m('new.txt'), '0123456789');
  const fd = fs.openSync(ve.m('new.txt'), 'r+');
  fs.ftruncateSync(fd, 4);
  t.is(fs.fstatSync(fd).size, 4);
  fs.ftruncateSync(fd, 6);
  fs.closeSync(fd);
  t.deepEqual(fs.readFileSync(ve.m('new.txt')), Buffer.from('0123\0\0'));
  // A template file opened for writing, then ftruncated.
  const fd2 = fs.openSync(ve.m('root.txt'), 'r+');
  fs.ftruncateSync(fd2, 4);
  fs.closeSync(fd2);
  t.is(fs.readFileSync(ve.m('root.txt'), 'utf8'), 'root');

  t.deepEqual(fs.readFileSync(ve.p('README.txt')), Buffer.from('rea\0\0\0\0\0'));
  t.is(fs.readFileSync(ve.tp('README.txt'), 'utf8'), 'readme\n', 'template unchanged');
  t.is(fs.readFileSync(ve.tp('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n', 'template unchanged');
  t.is(fs.readFileSync(ve.tp('root.txt'), 'utf8'), 'root owned\n', 'template unchanged');
});

// ------------------------------------------------------------------ append

test('O_APPEND: writes from two descriptors land at the end, in order', async (t) => {
  const ve = await mountVe(t);
  for (const rel of ['etc/hosts', 'appended.txt']) {
    if (rel === 'appended.txt') fs.writeFileSync(ve.m(rel), 'start\n');
    const start = fs.readFileSync(ve.m(rel), 'utf8');
    const a = fs.openSync(ve.m(rel), fs.constants.O_WRONLY | fs.constants.O_APPEND);
    const b = fs.openSync(ve.m(rel), fs.constants.O_WRONLY | fs.constants.O_APPEND);
    fs.writeSync(a, 'one\n');
    fs.writeSync(b, 'two\n');
    fs.writeSync(a, 'three\n', 0); // a position is ignored under O_APPEND on Linux
    fs.writeSync(b, 'four\n');
    fs.closeSync(a);
    fs.closeSync(b);
    fs.appendFileSync(ve.m(rel), 'five\n');
    const expected = `${start}one\ntwo\nthree\nfour\nfive\n`;
    t.is(fs.readFileSync(ve.m(rel), 'utf8'), expected, `${rel} on the mount`);
    t.is(fs.readFileSync(ve.p(rel), 'utf8'), expected, `${rel} in the private tree`);
  }
  t.is(fs.readFileSync(ve.tp('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n');
});

// --------------------------------------------------------------- O_EXCL

test('O_CREAT|O_EXCL on existing template names answers EEXIST and copies nothing up', async (t) => {
  const ve = await mountVe(t);
  const excl = fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY;
  for (const rel of ['README.txt', 'etc/hosts', 'etc', 'etc/motd', 'dangling', 'fifo', 'links/two-a']) {
    t.is(errnoOf(() => fs.openSync(ve.m(rel), excl, 0o644)), 'EEXIST', rel);
    t.false(exists(ve.p(rel)), `${rel} not copied up`);
  }
  t.is(fs.readFileSync(ve.m('README.txt'), 'utf8'), 'readme\n');
  // And on a name the VE created.
  fs.closeSync(fs.openSync(ve.m('mine'), excl, 0o644));
  t.is(errnoOf(() => fs.openSync(ve.m('mine'), excl, 0o644)), 'EEXIST');
  // A deleted template name is free again.
  fs.unlinkSync(ve.m('root.txt'));
  const fd = fs.openSync(ve.m('root.txt'), excl, 0o600);
  fs.writeSync(fd, 'recreated');
  fs.closeSync(fd);
  t.is(fs.readFileSync(ve.m('root.txt'), 'utf8'), 'recreated');
});

// ------------------------------------------------------- sparse and large

test('sparse files: truncate -s 1G allocates nothing; copy-up of a sparse template file keeps its holes', async (t) => {
  const ve = await mountVe(t);
  sh('truncate', ['-s', '1G', ve.m('hole.img')]);
  const st = lstat(ve.m('hole.img'));
  t.is(st.size, BigInt(GiB));
  t.true(st.blocks * 512n <= 64n * 1024n, `1 GiB hole uses ${st.blocks} blocks on the mount`);
  t.true(lstat(ve.p('hole.img')).blocks * 512n <= 64n * 1024n, 'and in the private tree');
  const fd = fs.openSync(ve.m('hole.img'), 'r');
  const buf = Buffer.alloc(16, 0xff);
  fs.readSync(fd, buf, 0, 16, GiB / 2);
  fs.closeSync(fd);
  t.deepEqual(buf, Buffer.alloc(16), 'a hole reads as zeros');

  // The template's sparse file, copied up by an append.
  const tplBlocks = lstat(ve.tp('sparse.img')).blocks;
  fs.appendFileSync(ve.m('sparse.img'), '!');
  const up = lstat(ve.p('sparse.img'));
  t.is(up.size, BigInt(GiB + 1));
  t.true(up.blocks <= tplBlocks + 64n, `copy-up allocated ${up.blocks} blocks, the template ${tplBlocks}`);
  const fd2 = fs.openSync(ve.m('sparse.img'), 'r');
  const tail = Buffer.alloc(5);
  fs.readSync(fd2, tail, 0, 5, GiB - 4);
  fs.closeSync(fd2);
  t.is(tail.toString(), 'tail!');
});

test('a file larger than 4 GiB: one byte at offset 5 GiB reads back, size right', async (t) => {
  const ve = await mountVe(t);
  const got = py<{ size: number; byte: string; before: string; blocks: number }>(`
import json, os, sys
p = sys.argv[1]
off = 5 << 30
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b'Z', off)
os.close(fd)
fd = os.open(p, os.O_RDONLY)
byte = os.pread(fd, 1, off).decode()
before = os.pread(fd, 4, off - 4).hex()
st = os.fstat(fd)
os.close(fd)
print(json.dumps({'size': os.stat(p).st_size, 'byte': byte, 'before': before, 'blocks': st.st_blocks}))`, ve.m('huge.bin'));
  t.deepEqual({ size: got.size, byte: got.byte, before: got.before }, { size: 5 * GiB + 1, byte: 'Z', before: '00000000' });
  t.true(got.blocks <= 128, `sparse: ${got.blocks} blocks`);
  t.is(lstat(ve.p('huge.bin')).size, BigInt(5 * GiB + 1));
  // Beyond 4 GiB on a template file too (copy-up, then a write past 2^32).
  const fd = fs.openSync(ve.m('links/one.txt'), 'r+');
  fs.writeSync(fd, 'Y', 4 * GiB + 7);
  fs.closeSync(fd);
  const fd2 = fs.openSync(ve.m('links/one.txt'), 'r');
  const b = Buffer.alloc(1);
  fs.readSync(fd2, b, 0, 1, 4 * GiB + 7);
  fs.closeSync(fd2);
  t.is(b.toString(), 'Y');
  t.is(fs.statSync(ve.m('links/one.txt')).size, 4 * GiB + 8);
});

// ------------------------------------------------------------------- names

test('long names: 255 bytes work, 256 answer ENAMETOOLONG', async (t) => {
  const ve = await mountVe(t);
  const n255 = 'n'.repeat(255);
  const euro = '€'.repeat(85); // 255 bytes of UTF-8
  const n256 = 'n'.repeat(256);
  fs.writeFileSync(ve.m(n255), 'long');
  fs.mkdirSync(ve.m(`d${n255.slice(1)}`));
  fs.symlinkSync(n255, ve.m(`s${n255.slice(1)}`));
  fs.writeFileSync(ve.m(euro), 'euro');
  t.is(fs.readFileSync(ve.m(n255), 'utf8'), 'long');
  t.is(fs.readFileSync(ve.m(`s${n255.slice(1)}`), 'utf8'), 'long');
  t.is(fs.readFileSync(ve.m(euro), 'utf8'), 'euro');
  const names = fs.readdirSync(ve.mnt);
  for (const n of [n255, `d${n255.slice(1)}`, `s${n255.slice(1)}`, euro]) t.true(names.includes(n), `readdir lists a ${Buffer.byteLength(n)}-byte name`);
  t.true(exists(ve.p(n255)) && exists(ve.p(euro)), 'the private tree has them');
  fs.renameSync(ve.m(n255), ve.m(`r${n255.slice(1)}`));
  t.is(fs.readFileSync(ve.m(`r${n255.slice(1)}`), 'utf8'), 'long');

  const e256: Record<string, string> = {
    create: errnoOf(() => fs.writeFileSync(ve.m(n256), 'x')),
    mkdir: errnoOf(() => fs.mkdirSync(ve.m(n256))),
    symlink: errnoOf(() => fs.symlinkSync('x', ve.m(n256))),
    mknod: errnoOf(() => sh('mkfifo', [ve.m(n256)])),
    link: errnoOf(() => fs.linkSync(ve.m(euro), ve.m(n256))),
    rename: errnoOf(() => fs.renameSync(ve.m(euro), ve.m(n256))),
    'rename template file': errnoOf(() => fs.renameSync(ve.m('README.txt'), ve.m(n256))),
    stat: errnoOf(() => fs.statSync(ve.m(n256))),
    'utf8 256 bytes': errnoOf(() => fs.writeFileSync(ve.m(`${euro}x`), 'x')),
  };
  for (const k of Object.keys(e256)) {
    // mkfifo(1) reports through sh(); map its message.
    if (k === 'mknod' && e256[k] !== 'ok' && /File name too long/.test(e256[k])) e256[k] = 'ENAMETOOLONG';
  }
  t.deepEqual(e256, {
    create: 'ENAMETOOLONG', mkdir: 'ENAMETOOLONG', symlink: 'ENAMETOOLONG', mknod: 'ENAMETOOLONG', link: 'ENAMETOOLONG',
    rename: 'ENAMETOOLONG', 'rename template file': 'ENAMETOOLONG', stat: 'ENAMETOOLONG', 'utf8 256 bytes': 'ENAMETOOLONG',
  });
  t.is(fs.readFileSync(ve.m('README.txt'), 'utf8'), 'readme\n', 'a refused rename leaves the source');
});

test('names and symlink targets that are not valid UTF-8 survive byte for byte', async (t) => {
  // Names are bytes to the kernel: Latin-1 names exist in real trees (old tarballs, other locales).
  const script = `
import json, os, sys
mnt, priv, tpl = (a.encode() for a in sys.argv[1:4])
out = {}
try:
    out['read template file'] = open(os.path.join(mnt, b'\\xff\\xfe-latin1.txt'), 'rb').read().decode()
except OSError as e:
    out['read template file'] = e.strerror
out['template link target'] = os.readlink(os.path.join(mnt, b'link-latin1')).hex()
try:
    open(os.path.join(mnt, b'new-\\xe9.txt'), 'wb').write(b'new')
    os.symlink(b'\\xe9\\xff', os.path.join(mnt, b'new-link'))
    os.mkdir(os.path.join(mnt, b'new-dir-\\xe8'))
except OSError as e:
    out['create'] = e.strerror
out['listed'] = sorted(n.hex() for n in os.listdir(mnt) if n.startswith(b'\\xff') or n.startswith(b'new-'))
out['private names'] = sorted(n.hex() for n in os.listdir(priv))
out['new link target'] = os.readlink(os.path.join(mnt, b'new-link')).hex() if os.path.lexists(os.path.join(mnt, b'new-link')) else None
print(json.dumps(out))`;
  const ve = await mountVe(t, {
    template: (() => {
      const scratch = withScratch(t, 'vefs-posix-bytes');
      const tpl = scratch.dir('template');
      sh('python3', ['-c', `
import os, sys
t = sys.argv[1].encode()
open(os.path.join(t, b'\\xff\\xfe-latin1.txt'), 'wb').write(b'latin1 name')
os.symlink(b'caf\\xe9', os.path.join(t, b'link-latin1'))`, tpl]);
      return tpl;
    })(),
  });
  const got = py<Record<string, unknown>>(script, ve.mnt, ve.priv, ve.tpl);
  const h = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
  t.deepEqual(got, {
    listed: [h('\xff\xfe-latin1.txt'), h('new-\xe9.txt'), h('new-dir-\xe8'), h('new-link')].sort(),
    'read template file': 'latin1 name',
    'template link target': h('caf\xe9'),
    'private names': [h('new-\xe9.txt'), h('new-dir-\xe8'), h('new-link')].sort(),
    'new link target': h('\xe9\xff'),
  });
});

test('a long path: 20 nested directories, more than 1000 characters', async (t) => {
  const ve = await mountVe(t);
  const parts = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(2, '0')}-${'x'.repeat(57)}`);
  const rel = parts.join('/');
  t.true(rel.length > 1000);
  // Under a template directory, so the deep tree starts from a copied-up parent.
  fs.mkdirSync(ve.m(`dir/sub/${rel}`), { recursive: true });
  const file = ve.m(`dir/sub/${rel}/leaf.txt`);
  t.true(file.length > 1100);
  fs.writeFileSync(file, 'deep\n');
  t.is(fs.readFileSync(file, 'utf8'), 'deep\n');
  t.deepEqual(fs.readdirSync(ve.m(`dir/sub/${rel}`)), ['leaf.txt']);
  fs.renameSync(file, ve.m(`dir/sub/${parts[0]}/moved.txt`));
  t.is(fs.readFileSync(ve.m(`dir/sub/${parts[0]}/moved.txt`), 'utf8'), 'deep\n');
  fs.symlinkSync(`dir/sub/${parts[0]}/moved.txt`, ve.m(`dir/sub/${rel}/link`));
  t.is(fs.readlinkSync(ve.m(`dir/sub/${rel}/link`)), `dir/sub/${parts[0]}/moved.txt`);
  t.is(sh('find', [ve.m('dir/sub'), '-name', 'link']).trim(), ve.m(`dir/sub/${rel}/link`));
  t.true(fs.statSync(ve.p(`dir/sub/${rel}`)).isDirectory(), 'the private tree has the deep directory');
  t.is(fs.readFileSync(ve.p(`dir/sub/${parts[0]}/moved.txt`), 'utf8'), 'deep\n');
  t.is(fs.readFileSync(ve.m('dir/sub/file.txt'), 'utf8'), 'deep file\n', 'the template file beside it still shows');
});

// ------------------------------------------------------------ big directory

test('100,000 entries in one directory list correctly', async (t) => {
  const N = 100_000;
  const name = (i: number): string => `f${String(i).padStart(6, '0')}`;
  const ve = await mountVe(t, {
    // Created straight in the private tree, for speed: many/ merges with the template's many/.
    prepare: (priv) => {
      fs.mkdirSync(path.join(priv, 'many'));
      for (let i = 0; i < N; i++) fs.closeSync(fs.openSync(path.join(priv, 'many', name(i)), 'w'));
    },
  });
  for (const n of ['via-a', 'via-b', 'via-c']) fs.writeFileSync(ve.m(`many/${n}`), n);
  const expected = new Set<string>(['t0', 't1', 't2', 'via-a', 'via-b', 'via-c']);
  for (let i = 0; i < N; i++) expected.add(name(i));

  const lsCount = Number(sh('sh', ['-c', 'ls -f "$1" | wc -l', 'sh', ve.m('many')]).trim());
  t.is(lsCount, N + 6 + 2, 'ls -f counts every entry plus . and ..');
  const listed = fs.readdirSync(ve.m('many'));
  t.is(listed.length, N + 6);
  t.is(new Set(listed).size, listed.length, 'no name listed twice');
  t.deepEqual(listed.filter((n) => !expected.has(n)), [], 'no unexpected names');
  const listedSet = new Set(listed);
  const missing = [...expected].filter((n) => !listedSet.has(n));
  t.deepEqual(missing.slice(0, 20), [], `${missing.length} names not listed`);
  // Entries are reachable, and a deletion shows in the next listing.
  t.is(fs.readFileSync(ve.m('many/t1'), 'utf8'), 't1');
  t.true(fs.statSync(ve.m(`many/${name(N - 1)}`)).isFile());
  fs.unlinkSync(ve.m(`many/${name(500)}`));
  fs.unlinkSync(ve.m('many/t2'));
  const again = fs.readdirSync(ve.m('many'));
  t.is(again.length, N + 4);
  t.false(again.includes(name(500)) || again.includes('t2'));
});

// -------------------------------------------------------------- hard links

test('hard link of a file made in the VE: both names show nlink 2 and one st_ino', async (t) => {
  const ve = await mountVe(t);
  fs.writeFileSync(ve.m('h1'), 'shared\n');
  fs.linkSync(ve.m('h1'), ve.m('h2'));
  const a = lstat(ve.m('h1'));
  const b = lstat(ve.m('h2'));
  t.deepEqual({ nlinkA: a.nlink, nlinkB: b.nlink, sameIno: a.ino === b.ino }, { nlinkA: 2n, nlinkB: 2n, sameIno: true },
    `right after ln: h1 ino ${a.ino} nlink ${a.nlink}, h2 ino ${b.ino} nlink ${b.nlink}`);
  fs.appendFileSync(ve.m('h2'), 'via h2\n');
  t.is(fs.readFileSync(ve.m('h1'), 'utf8'), 'shared\nvia h2\n', 'a write through one name shows through the other');
  const pa = lstat(ve.p('h1'));
  const pb = lstat(ve.p('h2'));
  t.deepEqual([pa.ino === pb.ino, pa.nlink], [true, 2n], 'one inode with two names in the private tree');
  fs.unlinkSync(ve.m('h2'));
  t.is(lstat(ve.m('h1')).nlink, 1n, 'nlink drops back to 1 after unlinking the other name');
  t.is(fs.readFileSync(ve.m('h1'), 'utf8'), 'shared\nvia h2\n');
});

test('hard link to a template file: nlink 2, one st_ino (the file\'s own), template unchanged', async (t) => {
  const ve = await mountVe(t);
  const before = lstat(ve.m('links/one.txt'));
  const tplBefore = lstat(ve.tp('links/one.txt'));
  fs.linkSync(ve.m('links/one.txt'), ve.m('links/one-link'));
  const a = lstat(ve.m('links/one.txt'));
  const b = lstat(ve.m('links/one-link'));
  t.deepEqual({ nlinkA: a.nlink, nlinkB: b.nlink, sameIno: a.ino === b.ino, keptIno: a.ino === before.ino },
    { nlinkA: 2n, nlinkB: 2n, sameIno: true, keptIno: true },
    `before ino ${before.ino}; after: one.txt ino ${a.ino} nlink ${a.nlink}, one-link ino ${b.ino} nlink ${b.nlink}`);
  fs.appendFileSync(ve.m('links/one-link'), 'more\n');
  t.is(fs.readFileSync(ve.m('links/one.txt'), 'utf8'), 'one\nmore\n');
  const pa = lstat(ve.p('links/one.txt'));
  t.deepEqual([pa.ino === lstat(ve.p('links/one-link')).ino, pa.nlink], [true, 2n], 'linked in the private tree');
  const tplAfter = lstat(ve.tp('links/one.txt'));
  t.deepEqual([tplAfter.nlink, tplAfter.ino, tplAfter.ctimeNs], [tplBefore.nlink, tplBefore.ino, tplBefore.ctimeNs]);
  t.is(fs.readFileSync(ve.tp('links/one.txt'), 'utf8'), 'one\n');
});

/** Same-inode relations among names, after linking one of a template file's two names. */
function linkRelations(ve: Ve): Record<string, unknown> {
  fs.readFileSync(ve.m('links/two-a'));
  fs.readFileSync(ve.m('links/two-b'));
  fs.linkSync(ve.m('links/two-a'), ve.m('links/two-c'));
  fs.appendFileSync(ve.m('links/two-c'), 'via c\n');
  const st = (n: string): fs.BigIntStats => lstat(ve.m(`links/${n}`));
  const [a, b, c] = [st('two-a'), st('two-b'), st('two-c')];
  return {
    'a and c same ino': a.ino === c.ino,
    'a and b same ino': a.ino === b.ino,
    'b and c same ino': b.ino === c.ino,
    nlink: [a.nlink, b.nlink, c.nlink].map(Number),
    content: [fs.readFileSync(ve.m('links/two-a'), 'utf8'), fs.readFileSync(ve.m('links/two-b'), 'utf8')],
  };
}

test('hard link to a template file that has two template names: the same relations as kernel overlayfs', async (t) => {
  const ref = await mountVe(t, { overlay: true, label: 'vefs-posix-ovl' });
  const expected = linkRelations(ref);
  await ref.unmount();
  // Sanity of the reference: the link is to the copied-up name only.
  t.like(expected, { 'a and c same ino': true, 'a and b same ino': false, 'b and c same ino': false });
  const ve = await mountVe(t);
  t.deepEqual(linkRelations(ve), expected);
});

// ----------------------------------------------------------- inode numbers

/**
 * Which object a mount path really is: a directory is itself (directories
 * have no hard links); anything else is the private object when the private
 * tree has one (and it is not a whiteout), else the template's.
 */
function identity(ve: Ve, rel: string): string {
  const m = lstat(ve.m(rel));
  if (m.isDirectory()) return `dir:${rel}`;
  try {
    const p = lstat(ve.p(rel));
    if (!isWhiteout(p)) return `private:${p.dev}:${p.ino}`;
  } catch { /* not in the private tree */ }
  const tp = lstat(ve.tp(rel));
  return `template:${tp.dev}:${tp.ino}`;
}

/** Changes that copy up, link, create and delete, after everything was looked up once. */
function inodeWorkload(ve: Ve): void {
  sh('find', [ve.mnt, '-xdev', '-ls'], undefined);
  fs.appendFileSync(ve.m('README.txt'), 'changed\n');
  fs.appendFileSync(ve.m('links/two-a'), 'changed\n');     // breaks the template hard link pair
  fs.linkSync(ve.m('links/one.txt'), ve.m('links/one-b'));  // links a template file
  fs.chmodSync(ve.m('etc/hosts'), 0o600);
  fs.writeFileSync(ve.m('n1'), 'n1');
  fs.linkSync(ve.m('n1'), ve.m('n2'));
  fs.mkdirSync(ve.m('newdir'));
  fs.writeFileSync(ve.m('newdir/x'), 'x');
  fs.unlinkSync(ve.m('root.txt'));
  fs.renameSync(ve.m('secret.txt'), ve.m('dir/secret-moved.txt'));
  fs.symlinkSync('README.txt', ve.m('newlink'));
  fs.writeFileSync(ve.m('dir/sub/file.txt'), 'rewritten');
}

test('inode numbers are unique across the mount: equal numbers only for hard links of one file', async (t) => {
  const ve = await mountVe(t);
  inodeWorkload(ve);
  const lines = sh('find', [ve.mnt, '-xdev', '-printf', '%i %P\\n']).split('\n').filter(Boolean);
  const byIno = new Map<string, string[]>();
  for (const line of lines) {
    const sp = line.indexOf(' ');
    const rel = line.slice(sp + 1) || '.';
    byIno.set(line.slice(0, sp), [...(byIno.get(line.slice(0, sp)) ?? []), rel]);
  }
  t.true(lines.length > 25, `find listed ${lines.length} paths`);
  const shared: string[] = [];
  const byIdentity = new Map<string, Set<string>>();
  for (const [ino, rels] of byIno) {
    const ids = new Map(rels.map((r) => [r, identity(ve, r === '.' ? '' : r)]));
    if (new Set(ids.values()).size > 1) shared.push(`ino ${ino}: ${[...ids].map(([r, id]) => `${r} (${id})`).join(', ')}`);
    for (const id of ids.values()) byIdentity.set(id, new Set([...(byIdentity.get(id) ?? []), ino]));
  }
  t.deepEqual(shared, [], 'different files share an inode number');
  const split = [...byIdentity].filter(([, inos]) => inos.size > 1).map(([id, inos]) => `${id}: ${[...inos].join(', ')}`);
  t.deepEqual(split, [], 'one file shows different inode numbers under its names');
  // The hard links the workload made are there to be found.
  t.is(byIno.get(String(lstat(ve.m('n1')).ino))?.sort().join(','), 'n1,n2');
});

test('readdir d_ino (ls -i) agrees with stat st_ino for every entry', async (t) => {
  const ve = await mountVe(t);
  inodeWorkload(ve);
  const mismatches = py<string[]>(`
import json, os, sys
out = []
for root, dirs, files in os.walk(sys.argv[1]):
    with os.scandir(root) as it:
        for e in it:
            st = os.lstat(e.path)
            if e.inode() != st.st_ino:
                out.append('%s: d_ino %d, st_ino %d' % (e.path, e.inode(), st.st_ino))
print(json.dumps(out))`, ve.mnt);
  t.deepEqual(mismatches, []);
});

test('inode numbers are stable while mounted, across a copy-up', async (t) => {
  const ve = await mountVe(t);
  const rels = ['README.txt', 'etc/hosts', 'links/one.txt', 'etc', 'dir/sub', 'etc/motd', 'fifo'];
  const inos = (): Record<string, string> => Object.fromEntries(rels.map((r) => [r, String(lstat(ve.m(r)).ino)]));
  const first = inos();
  t.deepEqual(inos(), first, 'stat twice');
  // Copy-ups of every kind: data write, metadata change, a new child in a directory, xattr, times.
  fs.appendFileSync(ve.m('README.txt'), 'written\n');
  const fd = fs.openSync(ve.m('etc/hosts'), 'r+');
  fs.writeSync(fd, '#', 0);
  const whileOpen = String(lstat(ve.m('etc/hosts')).ino);
  const fstatIno = String(fs.fstatSync(fd, { bigint: true }).ino);
  fs.closeSync(fd);
  fs.chmodSync(ve.m('links/one.txt'), 0o600);
  fs.writeFileSync(ve.m('dir/sub/new.txt'), 'new');
  sh('setfattr', ['-n', 'user.x', '-v', '1', ve.m('etc')]);
  sh('touch', ['-h', '-d', '2001-01-01', ve.m('etc/motd')]);
  sh('touch', ['-d', '2001-01-01', ve.m('fifo')]);
  for (const r of rels) t.true(exists(ve.p(r)), `${r} was copied up`);
  t.is(whileOpen, first['etc/hosts'], 'st_ino while the copied-up file is open');
  t.is(fstatIno, first['etc/hosts'], 'fstat of the open descriptor');
  t.deepEqual(inos(), first, 'right after the copy-ups');
  // Past the kernel's attribute cache, so the server answers again.
  await new Promise((r) => setTimeout(r, 1500));
  t.deepEqual(inos(), first, 'after the attribute cache expired');
  const viaFind: Record<string, string> = {};
  for (const l of sh('find', [ve.mnt, '-xdev', '-printf', '%P %i\\n']).split('\n')) {
    const i = l.lastIndexOf(' ');
    if (rels.includes(l.slice(0, i))) viaFind[l.slice(0, i)] = l.slice(i + 1);
  }
  t.deepEqual(viaFind, first, 'find -printf %i');
});

// -------------------------------------------------------------- permissions

async function asUser(ve: Ve, steps: Step[]): Promise<Array<string | unknown>> {
  const results = await runWorkloadAs(USER, ve.mnt, steps);
  return results.map((r) => (r.ok ? (r.value ?? 'ok') : r.code));
}

test('permissions for a non-root user: read yes, write/create/chmod of root\'s things no', async (t) => {
  const ve = await mountVe(t);
  const got = await asUser(ve, [
    { op: 'read', args: { path: 'README.txt' } },
    { op: 'overwrite', args: { path: 'README.txt', data: 'mine' } },
    { op: 'append', args: { path: 'README.txt', data: 'mine' } },
    { op: 'truncate', args: { path: 'README.txt', length: 0 } },
    { op: 'read', args: { path: 'secret.txt' } },
    { op: 'create', args: { path: 'etc/new.txt', data: 'x' } },
    { op: 'mkdir', args: { path: 'etc/newdir' } },
    { op: 'symlink', args: { target: 'x', path: 'etc/newlink' } },
    { op: 'unlink', args: { path: 'etc/hosts' } },
    { op: 'rename', args: { from: 'etc/hosts', to: 'pub/hosts' } },
    { op: 'chmod', args: { path: 'root.txt', mode: 0o666 } },
    { op: 'chown', args: { path: 'root.txt', uid: USER.uid, gid: USER.gid } },
    { op: 'setxattr', args: { path: 'root.txt', name: 'user.x', value: 'y' } },
    { op: 'readdir', args: { path: 'etc' } },
  ]);
  t.deepEqual(got, [
    'readme\n', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EPERM', 'EPERM',
    'EACCES', ['hosts', 'motd'],
  ]);
  t.is(fs.readFileSync(ve.m('README.txt'), 'utf8'), 'readme\n', 'the template file is unchanged on the mount');
  for (const rel of ['README.txt', 'root.txt', 'etc/hosts', 'etc/new.txt', 'etc/newdir']) t.false(exists(ve.p(rel)), `nothing copied up or made for ${rel}`);
  t.is(fs.statSync(ve.m('root.txt')).mode & 0o7777, 0o644);
});

test('a non-root user creates in a 1777 directory and owns what it creates', async (t) => {
  const ve = await mountVe(t);
  const got = await asUser(ve, [
    { op: 'create', args: { path: 'pub/mine.txt', data: 'by user', mode: 0o644 } },
    { op: 'stat', args: { path: 'pub/mine.txt' } },
    { op: 'append', args: { path: 'pub/mine.txt', data: ', again' } },
    { op: 'mkdir', args: { path: 'pub/mydir', mode: 0o755 } },
    { op: 'stat', args: { path: 'pub/mydir' } },
    { op: 'create', args: { path: 'pub/mydir/inner', data: 'in' } },
    { op: 'symlink', args: { target: 'mine.txt', path: 'pub/mylink' } },
    { op: 'stat', args: { path: 'pub/mylink' } },
    { op: 'mkfifo', args: { path: 'pub/myfifo' } },
    { op: 'stat', args: { path: 'pub/myfifo' } },
    { op: 'chmod', args: { path: 'pub/mine.txt', mode: 0o600 } },
    { op: 'utimes', args: { path: 'pub/mine.txt', atime: [1_000_000_000, 1], mtime: [1_000_000_000, 2] } },
    { op: 'read', args: { path: 'pub/mine.txt' } },
  ]);
  const owned = { uid: USER.uid, gid: USER.gid };
  // The child inherits this process's umask.
  const umask = process.umask();
  const masked = (mode: number): string => (mode & ~umask).toString(8);
  t.deepEqual(got, [
    'ok', { type: 'file', mode: masked(0o644), ...owned, size: 7 }, 'ok',
    'ok', { type: 'dir', mode: masked(0o755), ...owned }, 'ok',
    'ok', { type: 'symlink', mode: '777', ...owned, size: 8 },
    'ok', { type: 'fifo', mode: masked(0o666), ...owned, size: 0 },
    'ok', 'ok', 'by user, again',
  ]);
  const owners = Object.fromEntries(['pub/mine.txt', 'pub/mydir', 'pub/mydir/inner', 'pub/mylink', 'pub/myfifo']
    .map((r) => [r, exists(ve.p(r)) ? `${lstat(ve.p(r)).uid}:${lstat(ve.p(r)).gid}` : 'missing']));
  t.deepEqual(owners, Object.fromEntries(Object.keys(owners).map((r) => [r, `${USER.uid}:${USER.gid}`])),
    'owners in the private tree');
  // Sticky directory: root's template file in pub/ is not the user's to remove (made here as root).
  fs.writeFileSync(ve.m('pub/roots'), 'r');
  t.deepEqual(await asUser(ve, [{ op: 'unlink', args: { path: 'pub/roots' } }]), ['EPERM']);
});

test('hard link to a template file whose metadata alone was changed: one file, data shared', async (t) => {
  const ve = await mountVe(t);
  fs.chmodSync(ve.m('etc/hosts'), 0o640);           // a metadata-only copy-up
  sh('touch', ['-m', '-d', '@1000000000.5', ve.m('etc/hosts')]);
  fs.linkSync(ve.m('etc/hosts'), ve.m('etc/hosts-link'));
  t.is(fs.readFileSync(ve.m('etc/hosts-link'), 'utf8'), '127.0.0.1 localhost\n', 'the new name reads the template data');
  fs.appendFileSync(ve.m('etc/hosts-link'), '::1 localhost\n');
  const a = lstat(ve.m('etc/hosts'));
  const b = lstat(ve.m('etc/hosts-link'));
  t.deepEqual({ same: a.ino === b.ino, nlink: [a.nlink, b.nlink], mode: Number(a.mode & 0o7777n), size: [a.size, b.size] },
    { same: true, nlink: [2n, 2n], mode: 0o640, size: [34n, 34n] });
  t.is(fs.readFileSync(ve.m('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n::1 localhost\n');
  t.is(fs.readFileSync(ve.tp('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n', 'template unchanged');
  await ve.unmount();
  t.is(fs.readFileSync(ve.p('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n::1 localhost\n', 'the private tree holds the data');
  t.is(lstat(ve.p('etc/hosts')).ino, lstat(ve.p('etc/hosts-link')).ino);
});

test('a set-group-ID directory gives new files its group and new subdirectories its set-group-ID bit', async (t) => {
  const ve = await mountVe(t);
  fs.mkdirSync(ve.m('shared'));
  fs.chownSync(ve.m('shared'), 0, USER.gid);
  fs.chmodSync(ve.m('shared'), 0o2775);
  // The same on the private tree's own filesystem, for reference.
  const ref = ve.scratch.dir('ref-shared');
  fs.chownSync(ref, 0, USER.gid);
  fs.chmodSync(ref, 0o2775);
  const make = (dir: string): Record<string, string> => {
    fs.writeFileSync(path.join(dir, 'f'), 'f');
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.symlinkSync('f', path.join(dir, 'l'));
    sh('mkfifo', [path.join(dir, 'p')]);
    return Object.fromEntries(['f', 'sub', 'l', 'p'].map((n) => {
      const st = lstat(path.join(dir, n));
      return [n, `${st.uid}:${st.gid} ${(Number(st.mode) & 0o7777).toString(8)}`];
    }));
  };
  const expected = make(ref);
  t.is(expected.sub.split(' ')[0], `0:${USER.gid}`);
  t.deepEqual(make(ve.m('shared')), expected);
  // In a template directory made set-group-ID through the mount.
  fs.chownSync(ve.m('dir'), 0, USER.gid);
  fs.chmodSync(ve.m('dir'), 0o2755);
  fs.writeFileSync(ve.m('dir/g'), 'g');
  t.is(lstat(ve.m('dir/g')).gid, BigInt(USER.gid));
});
