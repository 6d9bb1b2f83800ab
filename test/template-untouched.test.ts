// The template is never changed by a VE: not its content, modes, owners,
// xattrs, ACLs, nor any time — atime and ctime included — whatever the VE
// reads, writes, renames or deletes through its VEFS mount.
//
// Snapshots of the template are taken through a read-only noatime bind
// mount of it: snapshotTree reads directories (readdir) and symlinks
// (readlink), which on the template's own relatime mount update their atimes
// and would both change the template and hide later changes (relatime
// updates an atime at most once a day once it is newer than mtime/ctime).
// All template atimes are set in the past, older than mtime and ctime, so
// any access that is not O_NOATIME shows.
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { mountVefs, withScratch, type Scratch } from './helpers/mounts.js';
import { diffSnapshots, snapshotTree, type Snapshot } from './helpers/tree.js';

const run = promisify(execFile);

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20, ...opts });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')}... failed: ${e.message.slice(0, 4000)}\nstderr: ${(e.stderr ?? '').slice(0, 4000)}`);
  }
}

// ------------------------------------------------------------ the template

/** Two layers (mounted top:base) with every kind of object the VE will touch. */
function buildLayers(base: string, top: string): void {
  const f = (root: string, rel: string, data: string | Buffer, mode = 0o644, uid = 0, gid = 0): void => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  };
  const d = (root: string, rel: string, mode = 0o755, uid = 0, gid = 0): void => {
    const p = path.join(root, rel);
    fs.mkdirSync(p, { recursive: true });
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  };
  const l = (root: string, target: string, rel: string): void => fs.symlinkSync(target, path.join(root, rel));

  // base
  f(base, 'README', 'base readme\n');
  d(base, 'bin');
  fs.copyFileSync('/usr/bin/true', path.join(base, 'bin/true'));
  fs.chmodSync(path.join(base, 'bin/true'), 0o755);
  f(base, 'bin/script.sh', '#!/bin/sh\necho script ran\n', 0o755);
  f(base, 'bin/suid', '#!/bin/sh\n', 0o4755);
  f(base, 'bin/sgid', '#!/bin/sh\n', 0o2755, 0, 1000);
  d(base, 'etc');
  f(base, 'etc/hosts', '127.0.0.1 localhost\n');
  f(base, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n');
  d(base, 'etc/conf.d');
  f(base, 'etc/conf.d/a.conf', 'a=1\n');
  f(base, 'etc/conf.d/b.conf', 'b=2\n');
  l(base, '../README', 'etc/motd');
  l(base, '/etc/hostname', 'etc/alt');
  l(base, 'nowhere', 'etc/dead');
  d(base, 'home/user', 0o700, 1000, 1000);
  f(base, 'home/user/.profile', 'export PS1=$\n', 0o644, 1000, 1000);
  f(base, 'home/user/notes', 'private notes\n', 0o600, 1000, 1000);
  d(base, 'var/empty');
  d(base, 'var/tmp', 0o1777);
  d(base, 'var/log');
  f(base, 'var/log/old.log', 'old log\n', 0o640);
  d(base, 'var/spool', 0o700);
  f(base, 'var/spool/job', 'job\n', 0o600);
  sh('mkfifo', ['-m', '0644', path.join(base, 'var/fifo')]);
  sh('mknod', ['-m', '0666', path.join(base, 'var/null'), 'c', '1', '3']);
  sh('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()', path.join(base, 'var/sock')]);
  d(base, 'data');
  f(base, 'data/big.bin', Buffer.from(Array.from({ length: 2 << 20 }, (_, i) => (i * 2654435761) >>> 24)));
  const sparse = fs.openSync(path.join(base, 'data/sparse.img'), 'w', 0o644);
  fs.writeSync(sparse, 'middle', 1 << 20);
  fs.ftruncateSync(sparse, 64 << 20);
  fs.writeSync(sparse, 'end', (64 << 20) - 3);
  fs.closeSync(sparse);
  f(base, 'data/empty', '');
  f(base, 'data/xattr.txt', 'xattrs\n');
  sh('setfattr', ['-n', 'user.a', '-v', 'alpha', path.join(base, 'data/xattr.txt')]);
  sh('setfattr', ['-n', 'user.b', '-v', '0x00010203ff', path.join(base, 'data/xattr.txt')]);
  sh('setfattr', ['-n', 'security.vefs', '-v', 'label', path.join(base, 'data/xattr.txt')]);
  sh('setfattr', ['-n', 'trusted.vefs', '-v', 'trusted', path.join(base, 'data/xattr.txt')]);
  f(base, 'data/acl.txt', 'acl\n');
  sh('setfacl', ['-m', 'u:1000:rw,g:1000:r', path.join(base, 'data/acl.txt')]);
  d(base, 'data/acl-dir');
  sh('setfacl', ['-d', '-m', 'u:1000:rwx', path.join(base, 'data/acl-dir')]);
  f(base, 'data/hl1', 'hard linked\n');
  fs.linkSync(path.join(base, 'data/hl1'), path.join(base, 'data/hl2'));
  f(base, 'data/name with spaces é', 'spaces\n');
  d(base, 'deep/a/b/c/d/e');
  f(base, 'deep/a/b/c/d/e/leaf', 'leaf\n');
  f(base, 'deep/a/b/c/sibling', 'sibling\n');
  l(base, 'deep/a', 'dirlink');
  l(base, 'chain2', 'chain1');
  l(base, 'README', 'chain2');
  sh('setfattr', ['-n', 'user.dir', '-v', 'etc', path.join(base, 'etc')]);

  // top: overrides and additions, so directories merge across layers.
  f(top, 'README', 'top readme\n');
  d(top, 'etc');
  f(top, 'etc/hosts', '127.0.0.1 localhost top\n');
  f(top, 'etc/extra', 'extra\n');
  d(top, 'etc/conf.d');
  f(top, 'etc/conf.d/c.conf', 'c=3\n');
  d(top, 'opt');
  f(top, 'opt/tool', '#!/bin/sh\necho tool\n', 0o755);
  d(top, 'data');
  f(top, 'data/top.txt', 'top data\n');
  l(top, 'etc/extra', 'top-link');
  sh('setfattr', ['-n', 'user.top', '-v', '1', path.join(top, 'etc/extra')]);
}

/**
 * Every object's atime in 2001 and mtime in 2002, with odd nanoseconds,
 * deepest first so setting a child's times does not touch its parent's.
 * The atimes are older than the mtimes and the (now) ctimes: under relatime
 * any access that updates atime shows.
 */
function ageTimes(root: string): void {
  sh('python3', ['-c', `
import os, sys
paths = []
for d, dirs, files in os.walk(sys.argv[1]):
    paths += [os.path.join(d, n) for n in dirs + files]
paths.append(sys.argv[1])
paths.sort(key=lambda p: -p.count('/'))
for i, p in enumerate(paths):
    os.utime(p, ns=(978307200_000000000 + i * 1000003 + 7, 1009843200_000000000 + i * 1000033 + 11), follow_symlinks=False)
`, root]);
}

interface Fixture {
  scratch: Scratch;
  layers: string;
  base: string;
  top: string;
  /** Read-only noatime view of `layers`, for snapshots. */
  view: string;
  priv: string;
  work: string;
  mnt: string;
  /** Outside the mount, for copies and archives. */
  out: string;
}

/** Builds the layers and the read-only noatime view; the view is unmounted by the test's teardown. */
async function fixture(t: ExecutionContext): Promise<Fixture> {
  const scratch = withScratch(t, 'vefs-untouched');
  const layers = scratch.dir('layers');
  const base = scratch.dir('layers', 'base');
  const top = scratch.dir('layers', 'top');
  buildLayers(base, top);
  ageTimes(layers);
  const view = scratch.dir('view');
  await run('mount', ['--bind', layers, view]);
  // Registered after withScratch's, so it runs first: the scratch's rm must not meet a mount.
  t.teardown(async () => {
    if (fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === view)) {
      await run('umount', [view]);
    }
  });
  await run('mount', ['-o', 'remount,bind,ro,noatime', view]);
  return {
    scratch, layers, base, top, view,
    priv: scratch.dir('private'), work: scratch.dir('work'), mnt: scratch.dir('mnt'), out: scratch.dir('out'),
  };
}

function snapshot(fx: Fixture): Snapshot {
  return snapshotTree(fx.view, { withAtime: true, withCtime: true });
}

/** Plain lstat atimes of everything, read without touching anything (no readdir of the real tree, no readlink). */
function atimesByLstat(fx: Fixture, snap: Snapshot): Record<string, string> {
  return Object.fromEntries(snap.entries.map((e) => [e.path, String(fs.lstatSync(path.join(fx.layers, e.path), { bigint: true }).atimeNs)]));
}

/** The "before" snapshot: taken twice, and checked against the template's own lstat. */
function before(t: ExecutionContext, fx: Fixture): Snapshot {
  const s1 = snapshot(fx);
  const s2 = snapshot(fx);
  t.deepEqual(diffSnapshots(s1, s2), [], 'two snapshots of the untouched template agree');
  t.deepEqual(atimesByLstat(fx, s1), Object.fromEntries(s1.entries.map((e) => [e.path, e.atimeNs])),
    'snapshotting did not change any atime');
  const aged = s1.entries.filter((e) => BigInt(e.atimeNs!) < 1_000_000_000n * 1_000_000_000n).length;
  t.is(aged, s1.entries.length, 'every template atime is in the past (2001)');
  t.true(s1.entries.length > 60, `the template has ${s1.entries.length} objects`);
  return s1;
}

async function mount(fx: Fixture): Promise<{ unmount(): Promise<void> }> {
  return mountVefs({ templates: [fx.top, fx.base], privateDir: fx.priv, workDir: fx.work, mountpoint: fx.mnt, stateDir: fx.scratch.stateDir });
}

function bash(script: string, fx: Fixture): string {
  return sh('bash', ['-euo', 'pipefail', '-c', script], { cwd: fx.mnt, env: { ...process.env, M: fx.mnt, O: fx.out, LC_ALL: 'C' } });
}

// ------------------------------------------------------------- workloads

/** Everything a VE does that only reads. */
const READ_WORKLOAD = String.raw`
cd "$M"
find . -type f -print0 | xargs -0 cat > /dev/null
ls -laR . > /dev/null
ls -laRL . > /dev/null 2>&1 || true      # follows links; the dangling one complains
find . > /dev/null
find . -printf '%i %n %m %u %g %s %T@ %A@ %C@ %p -> %l\n' > /dev/null
find . -type l -print0 | xargs -0 readlink > /dev/null
find . -type l -print0 | xargs -0 readlink -f > /dev/null
find . -print0 | xargs -0 getfattr -h -d -m - > /dev/null
getfacl -R -p . > /dev/null
du -a . > /dev/null
stat -L etc/motd chain1 dirlink > /dev/null
cat etc/motd chain1 dirlink/b/c/sibling > /dev/null
ls dirlink/ dirlink/b > /dev/null
md5sum data/big.bin bin/true data/sparse.img > /dev/null
./bin/true
test "$(./bin/script.sh)" = "script ran"
test "$(sh opt/tool)" = "tool"
python3 -c 'import mmap,sys; f=open(sys.argv[1],"rb"); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); assert len(m[:]) == 2<<20' data/big.bin
tar cf "$O/read.tar" --xattrs --acls --warning=no-file-ignored -C "$M" .
tar tf "$O/read.tar" > /dev/null
cp -a "$M/etc" "$O/etc-copy"
cp -a "$M/data" "$O/data-copy"
diff -r --no-dereference "$M/etc" "$O/etc-copy"
setpriv --reuid=1000 --regid=1000 --clear-groups \
  find . -path ./var/spool -prune -o -type f -readable -print0 | setpriv --reuid=1000 --regid=1000 --clear-groups xargs -0 cat > /dev/null
setpriv --reuid=1000 --regid=1000 --clear-groups cat home/user/notes > /dev/null
`;

/** Writes, metadata changes, deletions and renames of template objects, then reading again. */
const WRITE_WORKLOAD = String.raw`
cd "$M"
echo appended >> README
echo replaced > etc/passwd
truncate -s 3 etc/conf.d/a.conf
printf X | dd of=data/big.bin bs=1 seek=1000 conv=notrunc status=none
echo tail >> data/sparse.img
chmod 0600 etc/hosts
chmod 0700 bin/script.sh
chmod -R go-w var/log
chmod 0600 var/fifo var/null
chmod 0755 bin/suid
chown 1000:1000 etc/conf.d/b.conf
chown -h 1000:1000 etc/motd
chown -R 1000:1000 deep/a/b/c/d
touch data/empty
touch -d '2010-01-01 00:00:00.5' etc/extra
touch -h -d '2011-01-01' etc/alt
touch var/empty
setfattr -n user.new -v 1 data/xattr.txt
setfattr -x user.a data/xattr.txt
setfattr -n security.vefs -v changed data/xattr.txt
setfattr -n user.dirx -v 2 etc/conf.d
setfacl -m u:1000:rwx data/acl.txt
setfacl -b data/acl-dir
rm etc/dead data/empty
rm -rf deep/a/b/c
rmdir var/empty
mkdir var/empty
mkdir deep/a/b/c
echo over > deep/a/b/c/new
mv etc/extra etc/extra-moved
mv data/top.txt opt/
mv etc/conf.d etc/conf.d.moved
mv -f data/hl1 README
ln data/hl2 data/hl2-link
echo via-link >> data/hl2-link
ln -s ../README etc/newlink
mkdir -p new/dir
echo n > new/dir/file
cp -a etc etc-copy
cp -a data/sparse.img data/sparse-copy
mv home/user home/user-renamed
echo mine > home/user-renamed/mine
rm -rf opt
echo root > var/tmp/rootfile
setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo user > var/tmp/userfile'
setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo more >> home/user-renamed/notes'
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.pwrite(fd, b"Y", 5); os.fsync(fd); os.close(fd)' bin/sgid
# Bulk changes of every remaining template file under bin/, data/, etc/ and var/log.
find bin data var/log -type f -exec chmod u+w,g-w {} +
find bin data etc var/log -type f -exec touch -m {} +
find data var/log -type f -exec setfattr -n user.bulk -v 1 {} +
find etc var/log -type f -exec sh -c 'for f; do echo bulk >> "$f"; done' _ {} +
find . -type f -print0 | xargs -0 cat > /dev/null
ls -laR . > /dev/null
find . -type l -print0 | xargs -0 readlink > /dev/null
find . -print0 | xargs -0 getfattr -h -d -m - > /dev/null
tar cf "$O/all.tar" --xattrs --acls --warning=no-file-ignored -C "$M" .
sync
`;

// ----------------------------------------------------------------- tests

test('reading everything through VEFS leaves the template untouched, atimes included', async (t) => {
  const fx = await fixture(t);
  const s0 = before(t, fx);
  const m = await mount(fx);
  bash(READ_WORKLOAD, fx);
  await m.unmount();
  t.true(fs.statSync(path.join(fx.out, 'read.tar')).size > 2 << 20, 'tar read the mount');
  t.deepEqual(diffSnapshots(s0, snapshot(fx)), []);
});

test('a heavy read/write workload through VEFS leaves the template untouched, atimes and ctimes included', async (t) => {
  const fx = await fixture(t);
  const s0 = before(t, fx);
  const m = await mount(fx);
  bash(READ_WORKLOAD, fx);
  bash(WRITE_WORKLOAD, fx);
  // The workload did change the VE: the private tree holds its results.
  t.is(fs.readFileSync(path.join(fx.mnt, 'README'), 'utf8'), 'hard linked\n');
  t.is(fs.readFileSync(path.join(fx.mnt, 'etc/passwd'), 'utf8'), 'replaced\nbulk\n');
  t.is(fs.readFileSync(path.join(fx.mnt, 'home/user-renamed/notes'), 'utf8'), 'private notes\nmore\n');
  t.false(fs.existsSync(path.join(fx.mnt, 'opt')));
  await m.unmount();
  t.true(fs.existsSync(path.join(fx.priv, 'etc-copy/conf.d.moved/c.conf')), 'the private tree has the copies');
  t.deepEqual(diffSnapshots(s0, snapshot(fx)), []);
});

test('readlink, ls -l and find -type l through VEFS leave template symlink atimes', async (t) => {
  const fx = await fixture(t);
  const s0 = before(t, fx);
  const links = s0.entries.filter((e) => e.type === 'symlink').map((e) => e.path);
  t.true(links.length >= 7, `${links.length} template symlinks`);
  const m = await mount(fx);
  // Each layer's own symlinks, under their paths in the merged tree.
  const merged = [...new Set(links.map((p) => p.replace(/^(base|top)\//, '')))];
  for (const rel of merged) fs.readlinkSync(path.join(fx.mnt, rel));
  bash('ls -l etc/ . > /dev/null; find . -type l -printf "%l\\n" > /dev/null', fx);
  await m.unmount();
  const atimes = (s: Snapshot): Record<string, string | undefined> =>
    Object.fromEntries(s.entries.filter((e) => e.type === 'symlink').map((e) => [e.path, e.atimeNs]));
  t.deepEqual(atimes(snapshot(fx)), atimes(s0));
});
