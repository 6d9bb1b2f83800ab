// Tests of the native addon against real files in a temp dir on the host
// filesystem (ext4 here) and, for cross-filesystem cases, /dev/shm (tmpfs).
// Several cases need root: whiteouts, trusted.* xattrs, chown, FS_IMMUTABLE_FL.
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { native, C, PREP_FIELDS, PrepField, REPLACE_STAMP_FIELDS, ReplaceOutcome, SCAN_FIELDS, type NativeError } from '../native/index.js';

const ERRNO = os.constants.errno;
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

function tempDir(t: ExecutionContext, parent = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(parent, 'vefs-native-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An fd closed when the test ends (before its temp dir is removed). */
function track(t: ExecutionContext, fd: number): number {
  t.teardown(() => native.close(fd));
  return fd;
}

function openDir(t: ExecutionContext, dir: string): number {
  return track(t, native.openat(C.AT_FDCWD, dir, C.O_RDONLY | C.O_DIRECTORY, 0));
}

function create(t: ExecutionContext, dirfd: number, name: string, content?: Buffer | string): number {
  const fd = track(t, native.openat(dirfd, name, C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o644));
  if (content !== undefined) fs.writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
  return fd;
}

function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = fs.readSync(fd, buf, 0, length, position);
  return buf.subarray(0, n);
}

function throwsErrno(t: ExecutionContext, fn: () => unknown, code: string, syscall: string): NativeError {
  const err = t.throws(fn) as NativeError;
  t.is(err.code, code);
  t.is(err.errno, (os.constants.errno as Record<string, number>)[code]);
  t.is(err.syscall, syscall);
  return err;
}

async function rejectsErrno(t: ExecutionContext, promise: Promise<unknown>, code: string, syscall: string): Promise<void> {
  const err = (await t.throwsAsync(promise)) as NativeError;
  t.is(err.code, code);
  t.is(err.errno, (os.constants.errno as Record<string, number>)[code]);
  t.is(err.syscall, syscall);
}

/** glibc's makedev(), which is how the kernel encodes st_dev/st_rdev. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

function hasCloexec(fd: number): boolean {
  const flags = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return (parseInt(flags![1]!, 8) & C.O_CLOEXEC) !== 0;
}

const execFileAsync = promisify(execFile);

const fileType = (mode: number): number => mode & C.S_IFMT;

test('constants carry the Linux values', (t) => {
  t.is(C.O_RDONLY, 0);
  t.is(C.AT_FDCWD, -100);
  t.is(C.RENAME_WHITEOUT, 4);
  t.is(C.RESOLVE_BENEATH, 8);
  t.is(C.S_IFCHR, 0o020000);
  t.is(C.DT_DIR, 4);
  t.is(C.SEEK_DATA, 3);
  t.is(C.FS_IMMUTABLE_FL, 0x10);
  t.is(C.UTIME_OMIT, (1 << 30) - 2);
  for (const [name, value] of Object.entries(C)) t.true(Number.isInteger(value), name);
});

test('errors carry errno, code, syscall and a Node-style message', (t) => {
  const dir = tempDir(t);
  const err = throwsErrno(t, () => native.openat(C.AT_FDCWD, path.join(dir, 'missing'), C.O_RDONLY, 0), 'ENOENT', 'openat');
  t.is(err.message, `ENOENT: no such file or directory, openat '${path.join(dir, 'missing')}'`);
  t.true(err instanceof Error);
  throwsErrno(t, () => native.fstat(-1), 'EBADF', 'fstat');
  throwsErrno(t, () => native.close(-1), 'EBADF', 'close');
});

test('arguments of the wrong type throw TypeError instead of acting', (t) => {
  t.throws(() => native.openat('3' as unknown as number, 'x', C.O_RDONLY, 0), { instanceOf: TypeError });
  t.throws(() => native.openat(C.AT_FDCWD, 'a\0b', C.O_RDONLY, 0), { instanceOf: TypeError });
  t.throws(() => native.mknodat(C.AT_FDCWD, 'x', C.S_IFIFO, 0 as unknown as bigint), { instanceOf: TypeError });
  t.throws(() => native.lseek(0, 1.5, C.SEEK_SET), { instanceOf: TypeError });
  t.throws(() => native.fsetxattr(0, 'user.x', 'v' as unknown as Buffer, 0), { instanceOf: TypeError });
});

test('openat: create, O_EXCL, O_NOFOLLOW, O_PATH, O_TMPFILE + linkat, always O_CLOEXEC', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f', 'hello');
  t.true(hasCloexec(fd));
  t.is(readAt(fd, 10, 0).toString(), 'hello');
  throwsErrno(t, () => native.openat(dfd, 'f', C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644), 'EEXIST', 'openat');

  native.symlinkat('f', dfd, 'link');
  throwsErrno(t, () => native.openat(dfd, 'link', C.O_RDONLY | C.O_NOFOLLOW, 0), 'ELOOP', 'openat');
  const pathFd = track(t, native.openat(dfd, 'link', C.O_PATH | C.O_NOFOLLOW, 0));
  t.is(fileType(native.fstat(pathFd).mode), C.S_IFLNK);

  const tmp = track(t, native.openat(dfd, '.', C.O_TMPFILE | C.O_RDWR, 0o600));
  t.is(native.fstat(tmp).nlink, 0);
  fs.writeSync(tmp, 'anon');
  native.linkat(tmp, '', dfd, 'named', C.AT_EMPTY_PATH);
  t.is(native.fstat(tmp).nlink, 1);
  t.is(fs.readFileSync(path.join(dir, 'named'), 'utf8'), 'anon');
});

test('close releases the descriptor', (t) => {
  const dir = tempDir(t);
  const fd = native.openat(C.AT_FDCWD, dir, C.O_RDONLY | C.O_DIRECTORY, 0);
  native.close(fd);
  throwsErrno(t, () => native.close(fd), 'EBADF', 'close');
});

test('openat2: RESOLVE_* confine lookups; mode only matters when creating', (t) => {
  const dir = tempDir(t);
  fs.mkdirSync(path.join(dir, 'root'));
  fs.writeFileSync(path.join(dir, 'root', 'f'), 'inside');
  fs.writeFileSync(path.join(dir, 'x'), 'outside');
  fs.symlinkSync('/f', path.join(dir, 'root', 'abs'));
  fs.symlinkSync('f', path.join(dir, 'root', 'rel'));
  const root = openDir(t, path.join(dir, 'root'));

  throwsErrno(t, () => native.openat2(root, '../x', C.O_RDONLY, 0, C.RESOLVE_BENEATH), 'EXDEV', 'openat2');
  throwsErrno(t, () => native.openat2(root, path.join(dir, 'x'), C.O_RDONLY, 0, C.RESOLVE_BENEATH), 'EXDEV', 'openat2');
  throwsErrno(t, () => native.openat2(root, 'rel', C.O_RDONLY, 0, C.RESOLVE_NO_SYMLINKS), 'ELOOP', 'openat2');
  throwsErrno(t, () => native.openat2(root, 'missing', C.O_RDONLY, 0, 0), 'ENOENT', 'openat2');

  // Inside RESOLVE_IN_ROOT the absolute symlink "/f" means root/f.
  const inRoot = track(t, native.openat2(root, 'abs', C.O_RDONLY, 0, C.RESOLVE_IN_ROOT));
  t.is(readAt(inRoot, 10, 0).toString(), 'inside');
  t.true(hasCloexec(inRoot));

  const plain = track(t, native.openat2(root, 'f', C.O_RDONLY, 0o644, 0));
  t.is(native.fstat(plain).ino, native.fstatat(root, 'f', 0).ino);

  const created = track(t, native.openat2(root, 'new', C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600, C.RESOLVE_BENEATH));
  t.is(native.fstat(created).mode & 0o777, 0o600);
});

test('openat2 with O_NOATIME leaves atime alone, where a plain read moves it', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  create(t, dfd, 'f', 'data');
  const past = 1_000_000_000;
  const readWith = (flags: number): void => {
    native.utimensat(dfd, 'f', past, 0, 0, C.UTIME_OMIT, 0);
    const fd = native.openat2(dfd, 'f', C.O_RDONLY | flags, 0, 0);
    try {
      t.is(readAt(fd, 4, 0).toString(), 'data');
    } finally {
      native.close(fd);
    }
  };

  readWith(C.O_NOATIME);
  t.is(native.fstatat(dfd, 'f', 0).atimeSec, past);
  // The control: relatime updates an atime this old, so the check above could fail.
  readWith(0);
  t.true(native.fstatat(dfd, 'f', 0).atimeSec > past);
});

test('fstatat/fstat agree with fs.statSync at full width', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f', 'x'.repeat(5000));
  native.utimensat(dfd, 'f', 1_500_000_000, 111_222_333, 1_600_000_000, 444_555_666, 0);
  fs.symlinkSync('f', path.join(dir, 'link'));

  const mine = native.fstatat(dfd, 'f', 0);
  const node = fs.statSync(path.join(dir, 'f'), { bigint: true });
  t.is(mine.dev, node.dev);
  t.is(mine.ino, node.ino);
  t.is(mine.rdev, node.rdev);
  t.is(mine.mode, Number(node.mode));
  t.is(mine.nlink, Number(node.nlink));
  t.is(mine.uid, Number(node.uid));
  t.is(mine.gid, Number(node.gid));
  t.is(mine.size, 5000);
  t.is(mine.blksize, Number(node.blksize));
  t.is(mine.blocks, Number(node.blocks));
  t.is(BigInt(mine.atimeSec) * 1_000_000_000n + BigInt(mine.atimeNsec), node.atimeNs);
  t.is(BigInt(mine.mtimeSec) * 1_000_000_000n + BigInt(mine.mtimeNsec), node.mtimeNs);
  t.is(BigInt(mine.ctimeSec) * 1_000_000_000n + BigInt(mine.ctimeNsec), node.ctimeNs);
  t.is(mine.mtimeNsec, 444_555_666);

  t.deepEqual(native.fstat(fd), mine);
  t.is(fileType(native.fstatat(dfd, 'link', 0).mode), C.S_IFREG);
  const link = native.fstatat(dfd, 'link', C.AT_SYMLINK_NOFOLLOW);
  t.is(fileType(link.mode), C.S_IFLNK);
  t.is(link.ino, fs.lstatSync(path.join(dir, 'link'), { bigint: true }).ino);
  t.deepEqual(native.fstatat(fd, '', C.AT_EMPTY_PATH), mine);
  throwsErrno(t, () => native.fstatat(dfd, 'missing', 0), 'ENOENT', 'fstatat');
});

test('fstatfs matches statfs(2) and the fsid words of stat -f', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const mine = native.fstatfs(dfd);
  const node = fs.statfsSync(dir);
  t.is(mine.type, node.type);
  t.is(mine.bsize, node.bsize);
  t.is(mine.blocks, node.blocks);
  t.is(mine.files, node.files);
  t.true(mine.frsize > 0);
  t.true(mine.bavail <= mine.bfree && mine.bfree <= mine.blocks);
  t.true(mine.ffree <= mine.files);
  t.is(mine.namemax, 255);
  t.is(typeof mine.flags, 'number');
  // coreutils prints f_fsid with val[0] as the high word; ours has it low.
  const coreutils = BigInt('0x' + execFileSync('stat', ['-f', '-c', '%i', dir], { encoding: 'utf8' }).trim());
  t.is(mine.fsid, ((coreutils & 0xffffffffn) << 32n) | (coreutils >> 32n));
  t.not(mine.fsid, 0n);
  throwsErrno(t, () => native.fstatfs(-1), 'EBADF', 'fstatfs');
});

test('mkdirat, symlinkat/readlinkat, linkat, unlinkat', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  native.mkdirat(dfd, 'd', 0o750);
  t.is(native.fstatat(dfd, 'd', 0).mode, C.S_IFDIR | (0o750 & ~process.umask()));
  throwsErrno(t, () => native.mkdirat(dfd, 'd', 0o755), 'EEXIST', 'mkdirat');

  native.symlinkat('some/target', dfd, 'link');
  t.is(native.readlinkat(dfd, 'link'), 'some/target');
  const long = 'a/'.repeat(2046) + 'end';  // the longest target Linux allows: PATH_MAX - 1
  native.symlinkat(long, dfd, 'long');
  t.is(native.readlinkat(dfd, 'long'), long);
  const err = throwsErrno(t, () => native.symlinkat('x', dfd, 'link'), 'EEXIST', 'symlinkat');
  t.is(err.message, "EEXIST: file exists, symlinkat 'x' -> 'link'");
  throwsErrno(t, () => native.readlinkat(dfd, 'd'), 'EINVAL', 'readlinkat');

  create(t, dfd, 'f', 'content');
  native.linkat(dfd, 'f', dfd, 'd/hard', 0);
  t.is(native.fstatat(dfd, 'f', 0).nlink, 2);
  t.is(native.fstatat(dfd, 'd/hard', 0).ino, native.fstatat(dfd, 'f', 0).ino);
  throwsErrno(t, () => native.linkat(dfd, 'missing', dfd, 'x', 0), 'ENOENT', 'linkat');

  throwsErrno(t, () => native.unlinkat(dfd, 'd', 0), 'EISDIR', 'unlinkat');
  throwsErrno(t, () => native.unlinkat(dfd, 'd', C.AT_REMOVEDIR), 'ENOTEMPTY', 'unlinkat');
  native.unlinkat(dfd, 'd/hard', 0);
  native.unlinkat(dfd, 'd', C.AT_REMOVEDIR);
  native.unlinkat(dfd, 'link', 0);
  t.deepEqual(fs.readdirSync(dir).sort(), ['f', 'long']);
});

test('mknodat: whiteout (0/0 char device), FIFO, and rdev encoding', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  native.mknodat(dfd, 'wh', C.S_IFCHR, 0n);
  const wh = native.fstatat(dfd, 'wh', 0);
  t.is(fileType(wh.mode), C.S_IFCHR);
  t.is(wh.rdev, 0n);

  native.mknodat(dfd, 'fifo', C.S_IFIFO | 0o640, 0n);
  const fifo = native.fstatat(dfd, 'fifo', 0);
  t.is(fileType(fifo.mode), C.S_IFIFO);
  t.is(fifo.mode & 0o777, 0o640 & ~process.umask());

  // The kernel's dev_t is 12 bits of major and 20 of minor; these values
  // need every one of them to land in the right place of the 64-bit encoding.
  const rdev = makedev(4000, 1_000_000);
  native.mknodat(dfd, 'big', C.S_IFBLK | 0o600, rdev);
  t.is(native.fstatat(dfd, 'big', 0).rdev, rdev);
  t.is(fs.statSync(path.join(dir, 'big'), { bigint: true }).rdev, rdev);

  throwsErrno(t, () => native.mknodat(dfd, 'wh', C.S_IFCHR, 0n), 'EEXIST', 'mknodat');
});

test('renameat2: NOREPLACE, EXCHANGE, WHITEOUT', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  fs.writeFileSync(path.join(dir, 'a'), 'A');
  fs.writeFileSync(path.join(dir, 'b'), 'B');

  const err = throwsErrno(t, () => native.renameat2(dfd, 'a', dfd, 'b', C.RENAME_NOREPLACE), 'EEXIST', 'renameat2');
  t.is(err.message, "EEXIST: file exists, renameat2 'a' -> 'b'");
  t.is(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'B');

  native.renameat2(dfd, 'a', dfd, 'b', C.RENAME_EXCHANGE);
  t.is(fs.readFileSync(path.join(dir, 'a'), 'utf8'), 'B');
  t.is(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'A');
  throwsErrno(t, () => native.renameat2(dfd, 'a', dfd, 'c', C.RENAME_EXCHANGE), 'ENOENT', 'renameat2');

  native.renameat2(dfd, 'a', dfd, 'c', C.RENAME_WHITEOUT);
  t.is(fs.readFileSync(path.join(dir, 'c'), 'utf8'), 'B');
  const wh = native.fstatat(dfd, 'a', C.AT_SYMLINK_NOFOLLOW);
  t.is(fileType(wh.mode), C.S_IFCHR);
  t.is(wh.rdev, 0n);

  native.renameat2(dfd, 'c', dfd, 'b', 0);
  t.deepEqual(fs.readdirSync(dir).sort(), ['a', 'b']);
  t.is(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'B');
});

test('utimensat: nanoseconds on a symlink itself, UTIME_OMIT and UTIME_NOW, O_PATH fds', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  create(t, dfd, 'f');
  native.utimensat(dfd, 'f', 1_000_000_000, 0, 1_000_000_000, 0, 0);
  native.symlinkat('f', dfd, 'link');

  native.utimensat(dfd, 'link', 1_234_567_890, 123_456_789, 1_300_000_000, 987_654_321, C.AT_SYMLINK_NOFOLLOW);
  const link = native.fstatat(dfd, 'link', C.AT_SYMLINK_NOFOLLOW);
  t.deepEqual([link.atimeSec, link.atimeNsec, link.mtimeSec, link.mtimeNsec], [1_234_567_890, 123_456_789, 1_300_000_000, 987_654_321]);
  const target = native.fstatat(dfd, 'f', 0);
  t.deepEqual([target.atimeSec, target.mtimeSec], [1_000_000_000, 1_000_000_000]);

  const before = Math.floor(Date.now() / 1000);
  native.utimensat(dfd, 'f', 0, C.UTIME_OMIT, 0, C.UTIME_NOW, 0);
  const after = native.fstatat(dfd, 'f', 0);
  t.is(after.atimeSec, 1_000_000_000);
  t.true(after.mtimeSec >= before - 1 && after.mtimeSec <= before + 5);

  const pathFd = track(t, native.openat(dfd, 'link', C.O_PATH | C.O_NOFOLLOW, 0));
  native.utimensat(pathFd, '', 42, 5, 0, C.UTIME_OMIT, C.AT_EMPTY_PATH);
  const viaFd = native.fstatat(dfd, 'link', C.AT_SYMLINK_NOFOLLOW);
  t.deepEqual([viaFd.atimeSec, viaFd.atimeNsec, viaFd.mtimeSec], [42, 5, 1_300_000_000]);

  throwsErrno(t, () => native.utimensat(dfd, 'f', 0, 1_000_000_000, 0, 0, 0), 'EINVAL', 'utimensat');
});

test('fchmodat (fchmodat2): plain, AT_EMPTY_PATH on O_PATH, refused on a symlink', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  create(t, dfd, 'f');
  native.fchmodat(dfd, 'f', 0o4751, 0);
  t.is(native.fstatat(dfd, 'f', 0).mode & 0o7777, 0o4751);

  const pathFd = track(t, native.openat(dfd, 'f', C.O_PATH, 0));
  native.fchmodat(pathFd, '', 0o600, C.AT_EMPTY_PATH);
  t.is(native.fstatat(dfd, 'f', 0).mode & 0o7777, 0o600);

  native.symlinkat('f', dfd, 'link');
  throwsErrno(t, () => native.fchmodat(dfd, 'link', 0o644, C.AT_SYMLINK_NOFOLLOW), 'EOPNOTSUPP', 'fchmodat2');
  native.fchmodat(dfd, 'link', 0o640, 0);
  t.is(native.fstatat(dfd, 'f', 0).mode & 0o7777, 0o640);
  throwsErrno(t, () => native.fchmodat(dfd, 'missing', 0o644, 0), 'ENOENT', 'fchmodat2');
});

test('fchownat: ids, -1 keeps one, AT_SYMLINK_NOFOLLOW changes the link only', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  create(t, dfd, 'f');
  native.symlinkat('f', dfd, 'link');

  native.fchownat(dfd, 'f', 1234, 5678, 0);
  t.like(native.fstatat(dfd, 'f', 0), { uid: 1234, gid: 5678 });
  native.fchownat(dfd, 'f', -1, 42, 0);
  t.like(native.fstatat(dfd, 'f', 0), { uid: 1234, gid: 42 });

  native.fchownat(dfd, 'link', 777, 888, C.AT_SYMLINK_NOFOLLOW);
  t.like(native.fstatat(dfd, 'link', C.AT_SYMLINK_NOFOLLOW), { uid: 777, gid: 888 });
  t.like(native.fstatat(dfd, 'f', 0), { uid: 1234, gid: 42 });
  throwsErrno(t, () => native.fchownat(dfd, 'missing', 0, 0, 0), 'ENOENT', 'fchownat');
});

// Serial, so that the timing is not that of other tests blocking the thread.
test.serial('getdents lists 10,000 entries with inode numbers and types', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const count = 10_000;
  for (let i = 0; i < count; i++) native.close(native.openat(dfd, `file-${i}`, C.O_CREAT | C.O_WRONLY, 0o644));
  native.mkdirat(dfd, 'sub', 0o755);
  native.symlinkat('file-0', dfd, 'link');
  native.mknodat(dfd, 'fifo', C.S_IFIFO | 0o644, 0n);

  const start = performance.now();
  const entries = native.getdents(dfd);
  const ms = performance.now() - start;
  t.log(`getdents of ${entries.length} entries: ${ms.toFixed(1)} ms`);
  t.true(ms < 2000);

  t.is(entries.length, count + 3);
  const names = new Set(entries.map((e) => e.name));
  t.is(names.size, count + 3);
  t.false(names.has('.') || names.has('..'));
  t.deepEqual([...names].sort(), fs.readdirSync(dir).sort());
  const byName = new Map(entries.map((e) => [e.name, e]));
  t.is(byName.get('file-9999')!.type, C.DT_REG);
  t.is(byName.get('sub')!.type, C.DT_DIR);
  t.is(byName.get('link')!.type, C.DT_LNK);
  t.is(byName.get('fifo')!.type, C.DT_FIFO);
  t.is(byName.get('file-1234')!.ino, native.fstatat(dfd, 'file-1234', 0).ino);

  // A second call on the same, now exhausted, descriptor lists everything again.
  t.is(native.getdents(dfd).length, count + 3);
  t.deepEqual(native.getdents(openDir(t, path.join(dir, 'sub'))), []);
  const file = track(t, native.openat(dfd, 'file-0', C.O_RDONLY, 0));
  throwsErrno(t, () => native.getdents(file), 'ENOTDIR', 'getdents64');
});

test('xattrs by fd: user.* and trusted.*, flags, empty values, null for ENODATA', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f');

  t.is(native.fgetxattr(fd, 'user.vefs'), null);
  native.fsetxattr(fd, 'user.vefs', Buffer.from('v1'), 0);
  native.fsetxattr(fd, 'trusted.overlay.opaque', Buffer.from('y'), C.XATTR_CREATE);
  native.fsetxattr(fd, 'user.empty', Buffer.alloc(0), 0);
  t.deepEqual(native.fgetxattr(fd, 'user.vefs'), Buffer.from('v1'));
  t.deepEqual(native.fgetxattr(fd, 'trusted.overlay.opaque'), Buffer.from('y'));
  t.deepEqual(native.fgetxattr(fd, 'user.empty'), Buffer.alloc(0));
  t.deepEqual(native.flistxattr(fd).sort(), ['trusted.overlay.opaque', 'user.empty', 'user.vefs']);

  throwsErrno(t, () => native.fsetxattr(fd, 'user.vefs', Buffer.from('v2'), C.XATTR_CREATE), 'EEXIST', 'fsetxattr');
  throwsErrno(t, () => native.fsetxattr(fd, 'user.none', Buffer.from('v2'), C.XATTR_REPLACE), 'ENODATA', 'fsetxattr');
  native.fsetxattr(fd, 'user.vefs', Buffer.from('v2'), C.XATTR_REPLACE);
  t.deepEqual(native.fgetxattr(fd, 'user.vefs'), Buffer.from('v2'));

  native.fremovexattr(fd, 'user.vefs');
  t.is(native.fgetxattr(fd, 'user.vefs'), null);
  throwsErrno(t, () => native.fremovexattr(fd, 'user.vefs'), 'ENODATA', 'fremovexattr');
  throwsErrno(t, () => native.fgetxattr(-1, 'user.vefs'), 'EBADF', 'fgetxattr');
  throwsErrno(t, () => native.flistxattr(-1), 'EBADF', 'flistxattr');
});

test('l*xattr act on a symlink itself through /proc/self/fd paths', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const target = create(t, dfd, 'f');
  native.symlinkat('f', dfd, 'link');
  const link = `/proc/self/fd/${dfd}/link`;

  native.lsetxattr(link, 'trusted.vefs.origin', Buffer.from([1, 2, 3]), 0);
  t.deepEqual(native.lgetxattr(link, 'trusted.vefs.origin'), Buffer.from([1, 2, 3]));
  t.deepEqual(native.llistxattr(link), ['trusted.vefs.origin']);
  t.is(native.fgetxattr(target, 'trusted.vefs.origin'), null);
  t.deepEqual(native.flistxattr(target), []);
  // The kernel refuses user.* on symlinks; the call must not fall through to the target.
  throwsErrno(t, () => native.lsetxattr(link, 'user.x', Buffer.from('v'), 0), 'EPERM', 'lsetxattr');

  native.lremovexattr(link, 'trusted.vefs.origin');
  t.is(native.lgetxattr(link, 'trusted.vefs.origin'), null);
  t.deepEqual(native.llistxattr(link), []);
  throwsErrno(t, () => native.lremovexattr(link, 'trusted.vefs.origin'), 'ENODATA', 'lremovexattr');

  const file = `/proc/self/fd/${dfd}/f`;
  native.lsetxattr(file, 'user.a', Buffer.from('b'), 0);
  t.deepEqual(native.fgetxattr(target, 'user.a'), Buffer.from('b'));
  const err = throwsErrno(t, () => native.lgetxattr(path.join(dir, 'missing'), 'user.a'), 'ENOENT', 'lgetxattr');
  t.true(err.message.endsWith(`lgetxattr '${path.join(dir, 'missing')}'`));
  throwsErrno(t, () => native.llistxattr(path.join(dir, 'missing')), 'ENOENT', 'llistxattr');
});

test('xattr values and name lists larger than the first read buffer (tmpfs)', (t) => {
  const dir = tempDir(t, '/dev/shm');
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f');
  const big = randomBytes(20_000);
  native.fsetxattr(fd, 'trusted.big', big, 0);
  t.deepEqual(native.fgetxattr(fd, 'trusted.big'), big);
  t.deepEqual(native.lgetxattr(`/proc/self/fd/${dfd}/f`, 'trusted.big'), big);

  const names = Array.from({ length: 120 }, (_, i) => `trusted.${'n'.repeat(50)}-${i}`);
  for (const name of names) native.fsetxattr(fd, name, Buffer.from('v'), 0);
  t.deepEqual(native.flistxattr(fd).sort(), [...names, 'trusted.big'].sort());
  t.deepEqual(native.llistxattr(`/proc/self/fd/${dfd}/f`).sort(), [...names, 'trusted.big'].sort());
});

test('getflags/setflags: FS_IMMUTABLE_FL blocks changes until cleared', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  create(t, dfd, 'f', 'x');
  const fd = native.openat(dfd, 'f', C.O_RDONLY, 0);
  const original = native.getflags(fd);
  t.teardown(() => {
    try {
      native.setflags(fd, native.getflags(fd) & ~C.FS_IMMUTABLE_FL);
    } finally {
      native.close(fd);
    }
  });
  t.is(original & C.FS_IMMUTABLE_FL, 0);

  native.setflags(fd, original | C.FS_IMMUTABLE_FL);
  t.is(native.getflags(fd), original | C.FS_IMMUTABLE_FL);
  throwsErrno(t, () => native.unlinkat(dfd, 'f', 0), 'EPERM', 'unlinkat');
  throwsErrno(t, () => native.openat(dfd, 'f', C.O_WRONLY, 0), 'EPERM', 'openat');

  native.setflags(fd, original);
  t.is(native.getflags(fd), original);
  native.close(native.openat(dfd, 'f', C.O_WRONLY, 0));
  throwsErrno(t, () => native.getflags(-1), 'EBADF', 'ioctl');
});

test('flock: async waits for the holder, flockSync refuses to wait', async (t) => {
  const dir = tempDir(t);
  const lock = path.join(dir, 'lock');
  const a = track(t, native.openat(C.AT_FDCWD, lock, C.O_CREAT | C.O_RDWR, 0o600));
  const b = track(t, native.openat(C.AT_FDCWD, lock, C.O_RDWR, 0));
  await native.flock(a, C.LOCK_EX);
  throwsErrno(t, () => native.flockSync(b, C.LOCK_EX | C.LOCK_NB), 'EAGAIN', 'flock');
  t.throws(() => native.flockSync(b, C.LOCK_EX), { instanceOf: TypeError });
  let acquired = false;
  const waiting = native.flock(b, C.LOCK_EX).then(() => { acquired = true; });
  await new Promise((r) => setTimeout(r, 100));
  t.false(acquired, 'the second description waits while the first holds the lock');
  native.flockSync(a, C.LOCK_UN);
  await waiting;
  t.true(acquired);
  await rejectsErrno(t, native.flock(-1, C.LOCK_EX), 'EBADF', 'flock');
});

test('setlease/getlease: a read lease is refused while a writer is open, and shows a writer waiting', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'old');
  const writer = fs.openSync(file, 'r+');
  const fd = track(t, native.openat(C.AT_FDCWD, file, C.O_RDONLY, 0));
  throwsErrno(t, () => native.setlease(fd, C.F_RDLCK), 'EAGAIN', 'fcntl');
  fs.closeSync(writer);
  native.setlease(fd, C.F_RDLCK);
  t.is(native.getlease(fd), C.F_RDLCK);
  // The lease breaker signals us; without a handler SIGIO would end the process.
  const onSigio = (): void => undefined;
  process.on('SIGIO', onSigio);
  t.teardown(() => { process.off('SIGIO', onSigio); });
  const child = execFileAsync('sh', ['-c', `echo new > '${file}'`]);
  const deadline = Date.now() + 5000;
  while (native.getlease(fd) === C.F_RDLCK && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.is(native.getlease(fd), C.F_UNLCK, 'a writer waits for the lease to go');
  t.is(fs.readFileSync(file, 'utf8'), 'old');
  native.setlease(fd, C.F_UNLCK);
  await child;
  t.is(fs.readFileSync(file, 'utf8'), 'new\n');
});

test('prepareLinks opens each group\'s master and targets beneath a root, leases them and compares their bytes on the pool', async (t) => {
  const dir = tempDir(t);
  const data = randomBytes(3 * MiB + 17);
  const other = Buffer.from(data);
  other[2 * MiB + 5] ^= 1;
  for (const name of ['a', 'b', 'b2']) fs.writeFileSync(path.join(dir, name), data);
  fs.writeFileSync(path.join(dir, 'c'), other);
  fs.writeFileSync(path.join(dir, 'short'), data.subarray(0, MiB));
  fs.symlinkSync('a', path.join(dir, 'link'));
  const root = openDir(t, dir);
  const roots = (n: number): Int32Array => new Int32Array(n).fill(root);
  const row = (r: { facts: Float64Array }, k: number): Float64Array => r.facts.subarray(k * PREP_FIELDS, (k + 1) * PREP_FIELDS);
  const names = ['a', 'b', 'b2', 'c', 'short', 'missing', 'link', '../x'];
  const group = (...g: [number, number][]): Float64Array => Float64Array.from(g.flatMap(([master, count]) => [master, count, data.length]));
  const r = await native.prepareLinks(group([-1, names.length]), roots(names.length), names, false);
  const fds = names.map((_, k) => row(r, k)).filter((f) => f[PrepField.Err] === 0).map((f) => track(t, f[PrepField.Fd]!));
  t.is(fds.length, 5);
  t.deepEqual(names.map((_, k) => row(r, k)[PrepField.Err]), [0, 0, 0, 0, 0, ERRNO.ENOENT, ERRNO.ELOOP, ERRNO.EXDEV]);
  t.deepEqual(names.map((_, k) => row(r, k)[PrepField.Verdict]), [-1, 0, 0, 1, -1, -1, -1, -1], 'a differing byte and a short file are told apart');
  const st = fs.statSync(path.join(dir, 'b'), { bigint: true });
  t.is(r.ids[2], st.dev);
  t.is(r.ids[3], st.ino);
  const b = row(r, 1);
  t.deepEqual([b[PrepField.Size], b[PrepField.Mode], b[PrepField.Nlink], b[PrepField.MtimeSec], b[PrepField.MtimeNsec], b[PrepField.HasXattrs],
    b[PrepField.LeaseErr], b[PrepField.NowSize], b[PrepField.NowMtimeSec], b[PrepField.NowMtimeNsec]],
  [data.length, Number(st.mode), 1, Number(st.mtimeNs / 1_000_000_000n), Number(st.mtimeNs % 1_000_000_000n), 0, 0,
    data.length, Number(st.mtimeNs / 1_000_000_000n), Number(st.mtimeNs % 1_000_000_000n)]);
  // The master is read once: three whole files and c up to the chunk that differs (256 KiB chunks).
  t.is(r.bytesRead, 3 * data.length + (2 * MiB + 256 * KiB));

  // A master already open; leases: a file open for writing refuses one (EAGAIN), the others are held.
  const b2fd = track(t, native.openat(root, 'b2', C.O_RDONLY, 0));
  native.fsetxattr(b2fd, 'user.x', Buffer.from('y'), 0);
  const writer = native.openat(C.AT_FDCWD, path.join(dir, 'b'), C.O_WRONLY, 0);
  const leased = await native.prepareLinks(group([-1, 3]), roots(3), ['a', 'b', 'b2'], true).finally(() => native.close(writer));
  const [m, wb, b2] = [0, 1, 2].map((k) => row(leased, k));
  for (const f of [m, wb, b2]) track(t, f![PrepField.Fd]!);
  t.deepEqual([m![PrepField.LeaseErr], wb![PrepField.LeaseErr], b2![PrepField.LeaseErr]], [0, ERRNO.EAGAIN, 0]);
  t.deepEqual([m![PrepField.HasXattrs], b2![PrepField.HasXattrs]], [0, 1]);
  t.is(native.getlease(m![PrepField.Fd]!), C.F_RDLCK);
  t.deepEqual([wb![PrepField.Verdict], b2![PrepField.Verdict]], [-1, 0], 'a file open for writing is not compared');
  // Several groups in one call: one whose master is open already, one whose master does not open (its
  // target is not tried), one as above.
  const many = await native.prepareLinks(group([m![PrepField.Fd]!, 1], [-1, 2], [-1, 2]), roots(5), ['b', 'missing', 'b2', 'a', 'c'], false);
  for (const k of [0, 3, 4]) track(t, row(many, k)[PrepField.Fd]!);
  t.deepEqual([0, 1, 2, 3, 4].map((k) => row(many, k)[PrepField.Err]), [0, ERRNO.ENOENT, -1, 0, 0]);
  t.deepEqual([0, 4].map((k) => row(many, k)[PrepField.Verdict]), [0, 1]);
  t.is(many.bytesRead, 2 * data.length + 2 * (2 * MiB + 256 * KiB));
  await rejectsErrno(t, native.prepareLinks(group([-1, 1]), new Int32Array([-1]), ['a'], false), 'EBADF', 'openat2');
  t.throws(() => native.prepareLinks(group([-1, 2]), roots(1), ['a'], false), { instanceOf: RangeError });
  t.throws(() => native.prepareLinks(group([-1, 0]), roots(0), [], false), { instanceOf: RangeError }, 'a group without its master');
  t.throws(() => native.prepareLinks(group([-1, 1]), roots(1), ['a\0b'], false), { instanceOf: TypeError });
});

test('replaceNames links each name to its master through a temporary name, keeps the directory\'s times and seals a nameless target', async (t) => {
  const dir = tempDir(t);
  const root = openDir(t, dir);
  const master = create(t, root, 'm', 'same');
  const t1 = create(t, root, 'x', 'same');
  fs.linkSync(path.join(dir, 'x'), path.join(dir, 'y'));
  const t2 = create(t, root, 'z', 'same');
  const t3 = create(t, root, 'w', 'same');
  const moved = create(t, root, 'v', 'same');
  fs.renameSync(path.join(dir, 'w'), path.join(dir, 'w2'));
  const ids = (fds: number[]): BigUint64Array => BigUint64Array.from(fds.flatMap((fd) => [native.fstat(fd).dev, native.fstat(fd).ino]));
  const past = new Date('2001-02-03T04:05:06Z');
  fs.utimesSync(dir, past, past);
  const before = native.fstat(root);
  const flags = (fd: number): number => { try { return native.getflags(fd); } catch { return -1; } };
  const seal = flags(t2);
  t.teardown(() => { if (seal >= 0) native.setflags(t2, seal); });
  const targets = new Float64Array([master, t1, 0, -1, 2, master, t2, 0, seal, 1, master, t3, 0, -1, 1, master, moved, 1, -1, 1]);
  const r = native.replaceNames(targets, ids([t1, t2, t3, moved]), new Int32Array([root, root, root, root, -1]),
    ['x', 'y', 'z', 'w2', 'v'], '.tmp.', 7);
  t.is(r.error, null);
  t.deepEqual([...r.outcomes], [ReplaceOutcome.Done, ReplaceOutcome.Done, ReplaceOutcome.Done, ReplaceOutcome.Done,
    ReplaceOutcome.WriterWaiting], 'a leased target whose lease is not held is left for a writer');
  t.deepEqual([...r.gone], [1, 1, 1, 0]);
  const mino = native.fstat(master).ino;
  for (const name of ['x', 'y', 'z', 'w2']) t.is(fs.statSync(path.join(dir, name), { bigint: true }).ino, mino);
  t.is(native.fstat(master).nlink, 5);
  const after = native.fstat(root);
  t.deepEqual([after.mtimeSec, after.mtimeNsec, after.atimeSec], [before.mtimeSec, before.mtimeNsec, before.atimeSec]);
  t.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.tmp.')), []);
  t.deepEqual([...r.stamps.subarray(0, 2)], [before.mtimeSec, before.mtimeNsec]);
  t.deepEqual([...r.stamps.subarray(REPLACE_STAMP_FIELDS * 3 + 4, REPLACE_STAMP_FIELDS * 3 + 8)], [after.mtimeSec, after.mtimeNsec, after.ctimeSec, after.ctimeNsec]);
  t.is(r.dirInos[0], before.ino);
  if (seal >= 0) t.true((native.getflags(t2) & C.FS_IMMUTABLE_FL) !== 0, 'the nameless target is immutable');

  // A name that no longer shows its target, and a directory that is gone, are reported and left.
  const t4 = create(t, root, 'u', 'same');
  fs.renameSync(path.join(dir, 'u'), path.join(dir, 'u2'));
  fs.writeFileSync(path.join(dir, 'u'), 'same');
  const changed = native.replaceNames(new Float64Array([master, t4, 0, -1, 2]), ids([t4]), new Int32Array([root, -1]), ['u', 'u2'], '.tmp.', 1);
  t.deepEqual([...changed.outcomes], [ReplaceOutcome.Changed, ReplaceOutcome.Changed]);
  t.deepEqual([...changed.gone], [0]);
  t.not(fs.statSync(path.join(dir, 'u'), { bigint: true }).ino, mino);
  // A failure stops the call and comes back beside what was done before it.
  const failed = native.replaceNames(new Float64Array([-1, t4, 0, -1, 1]), ids([t4]), new Int32Array([root]), ['u2'], '.tmp.', 1);
  t.is(failed.error?.code, 'EBADF');
  t.is(failed.error?.syscall, 'linkat');
  t.throws(() => native.replaceNames(new Float64Array([master, t4, 0, -1, 2]), ids([t4]), new Int32Array([root]), ['u'], '.tmp.', 1),
    { instanceOf: RangeError });
  const fd = native.openat(root, 'm', C.O_RDONLY, 0);
  native.closeInBackground(new Int32Array([fd]));
  await native.closeDrained(0);
  t.is(native.closeBacklog(), 0);
});

test('scanDir lists a directory with the statx of its regular files, packed', (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'f'), 'hello');
  fs.mkdirSync(path.join(dir, 'd'));
  fs.symlinkSync('f', path.join(dir, 'l'));
  const odd = Buffer.from([0x6f, 0xff]);
  fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), odd]), 'x');
  const fd = openDir(t, dir);
  const r = native.scanDir(fd);
  const at = (name: string): number => r.names.indexOf(name);
  t.deepEqual([...r.names].sort(), ['d', 'f', 'l', odd.toString('latin1')].sort());
  t.is(r.types[at('d')], C.DT_DIR);
  t.is(r.types[at('l')], C.DT_LNK);
  t.is(r.types[at('f')], C.DT_REG);
  const st = fs.statSync(path.join(dir, 'f'), { bigint: true });
  const i = at('f');
  t.is(r.stats[i * SCAN_FIELDS]!, Number(st.mode));
  t.is(r.stats[i * SCAN_FIELDS + 4]!, 5);
  t.is(r.stats[i * SCAN_FIELDS + 5]!, Number(st.mtimeNs / 1_000_000_000n));
  t.is(r.stats[i * SCAN_FIELDS + 6]!, Number(st.mtimeNs % 1_000_000_000n));
  t.is(r.ids[i * 2 + 1], st.ino);
  t.is(r.ids[i * 2], st.dev);
  t.is(r.stats[at('d') * SCAN_FIELDS], 0, 'directories are not stat\'ed');
  t.is(r.types[at(odd.toString('latin1'))], C.DT_REG);
  t.is(r.stats[i * SCAN_FIELDS + 9]!, 0, 'not immutable');
});

test('scanDir without statFiles only lists; statNames stats chosen names, immutable flag included', (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'plain'), 'p');
  fs.writeFileSync(path.join(dir, 'sealed'), 'sealed');
  execFileSync('chattr', ['+i', path.join(dir, 'sealed')]);
  const fd = openDir(t, dir);
  const listed = native.scanDir(fd, false);
  t.deepEqual([...listed.names].sort(), ['plain', 'sealed']);
  t.true(listed.stats.every((v) => v === 0), 'nothing stat\'ed');
  t.true([...listed.types].every((v) => v === C.DT_REG));
  let r;
  try {
    r = native.statNames(fd, ['sealed', 'gone', 'plain']);
  } finally {
    execFileSync('chattr', ['-i', path.join(dir, 'sealed')]);
  }
  t.deepEqual(r.names, ['sealed', 'gone', 'plain']);
  t.is(r.types[1], 0xff, 'a missing name is marked gone');
  t.is(r.stats[0 * SCAN_FIELDS + 4], 6);
  t.is(r.stats[0 * SCAN_FIELDS + 9], 1, 'immutable');
  t.is(r.stats[2 * SCAN_FIELDS + 9], 0);
  t.is(r.ids[1], fs.statSync(path.join(dir, 'sealed'), { bigint: true }).ino);
});

test('nameToHandleAt/openByHandleAt reach an inode after its name moved', (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'a'), 'x');
  const { handle, mountId } = native.nameToHandleAt(C.AT_FDCWD, path.join(dir, 'a'), 0);
  t.true(Buffer.isBuffer(handle) && handle.length > 8);
  t.true(Number.isInteger(mountId));
  const ino = fs.statSync(path.join(dir, 'a')).ino;
  fs.renameSync(path.join(dir, 'a'), path.join(dir, 'b'));
  const dfd = openDir(t, dir);
  const fd = native.openByHandleAt(dfd, handle, C.O_RDONLY);
  t.is(native.fstat(fd).ino, BigInt(ino));
  t.throws(() => native.openByHandleAt(dfd, Buffer.alloc(3), C.O_RDONLY), { instanceOf: TypeError });
  fs.unlinkSync(path.join(dir, 'b'));
  native.close(fd);
  throwsErrno(t, () => native.openByHandleAt(dfd, handle, C.O_RDONLY), 'ESTALE', 'open_by_handle_at');
});

test('ftruncate, fallocate (plain, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE)', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f');

  native.ftruncate(fd, 12_345);
  t.is(native.fstat(fd).size, 12_345);
  t.is(native.fstat(fd).blocks, 0);
  throwsErrno(t, () => native.ftruncate(fd, -1), 'EINVAL', 'ftruncate');
  native.ftruncate(fd, 0);

  native.fallocate(fd, 0, 0, MiB);
  t.is(native.fstat(fd).size, MiB);
  t.true(native.fstat(fd).blocks >= MiB / 512);
  native.fallocate(fd, C.FALLOC_FL_KEEP_SIZE, MiB, MiB);
  t.is(native.fstat(fd).size, MiB);
  t.true(native.fstat(fd).blocks >= (2 * MiB) / 512);

  fs.writeSync(fd, Buffer.alloc(MiB, 0xff), 0, MiB, 0);
  const full = native.fstat(fd).blocks;
  native.fallocate(fd, C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, 0, 512 * KiB);
  t.true(native.fstat(fd).blocks <= full - (512 * KiB) / 512);
  t.true(readAt(fd, 512 * KiB, 0).equals(Buffer.alloc(512 * KiB)));
  native.fallocate(fd, C.FALLOC_FL_ZERO_RANGE, 512 * KiB, 256 * KiB);
  t.true(readAt(fd, 256 * KiB, 512 * KiB).equals(Buffer.alloc(256 * KiB)));
  t.true(readAt(fd, 256 * KiB, 768 * KiB).equals(Buffer.alloc(256 * KiB, 0xff)));
  t.is(native.fstat(fd).size, MiB);
  throwsErrno(t, () => native.fallocate(fd, 0, 0, 0), 'EINVAL', 'fallocate');
});

test('lseek: SET/CUR/END and SEEK_DATA/SEEK_HOLE over a sparse file', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f');
  native.ftruncate(fd, 4 * MiB);
  fs.writeSync(fd, Buffer.alloc(4 * KiB, 1), 0, 4 * KiB, MiB);

  t.is(native.lseek(fd, 10, C.SEEK_SET), 10);
  t.is(native.lseek(fd, 5, C.SEEK_CUR), 15);
  t.is(native.lseek(fd, 0, C.SEEK_END), 4 * MiB);
  t.is(native.lseek(fd, 0, C.SEEK_DATA), MiB);
  t.is(native.lseek(fd, MiB, C.SEEK_HOLE), MiB + 4 * KiB);
  t.is(native.lseek(fd, 0, C.SEEK_HOLE), 0);
  throwsErrno(t, () => native.lseek(fd, 2 * MiB, C.SEEK_DATA), 'ENXIO', 'lseek');
  throwsErrno(t, () => native.lseek(fd, -1, C.SEEK_SET), 'EINVAL', 'lseek');
});

test('ficlone clones where the filesystem can, else says why', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const src = create(t, dfd, 'src', randomBytes(64 * KiB));
  const dest = create(t, dfd, 'dest');
  try {
    native.ficlone(dest, src);
    t.true(readAt(dest, 64 * KiB, 0).equals(readAt(src, 64 * KiB, 0)));
  } catch (e) {
    // ext4 has no reflinks; the error must still be a proper errno error.
    t.true(['EOPNOTSUPP', 'EXDEV', 'EINVAL'].includes((e as NativeError).code), (e as NativeError).code);
    t.is((e as NativeError).syscall, 'ioctl');
  }
  throwsErrno(t, () => native.ficlone(-1, src), 'EBADF', 'ioctl');
});

test('copyFileRange copies between explicit offsets, EXDEV across filesystem types', (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const src = create(t, dfd, 'src', 'hello world 0123456789');
  const dest = create(t, dfd, 'dest');
  t.is(native.copyFileRange(src, 6, dest, 2, 5), 5);
  t.deepEqual(readAt(dest, 100, 0), Buffer.concat([Buffer.alloc(2), Buffer.from('world')]));
  t.is(native.copyFileRange(src, 100, dest, 0, 5), 0);

  const shm = openDir(t, tempDir(t, '/dev/shm'));
  const other = create(t, shm, 'other', 'abc');
  throwsErrno(t, () => native.copyFileRange(other, 0, dest, 0, 3), 'EXDEV', 'copy_file_range');
});

// Serial, so that the timing is not that of other tests blocking the thread.
test.serial('copyData keeps a 1 GiB sparse file sparse and is fast', async (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const src = create(t, dfd, 'src');
  native.ftruncate(src, GiB);
  const data = randomBytes(4 * KiB);
  fs.writeSync(src, data, 0, data.length, 512 * MiB);
  const dest = create(t, dfd, 'dest');

  const start = performance.now();
  await native.copyData(src, dest);
  const ms = performance.now() - start;
  t.log(`copyData of a 1 GiB sparse file: ${ms.toFixed(1)} ms`);
  t.true(ms < 200);

  const s = native.fstat(src);
  const d = native.fstat(dest);
  t.is(d.size, GiB);
  t.true(d.blocks > 0 && d.blocks <= s.blocks, `${d.blocks} blocks vs ${s.blocks}`);
  t.true(d.blocks <= 64);
  t.is(native.lseek(dest, 0, C.SEEK_DATA), 512 * MiB);
  t.is(native.lseek(dest, 512 * MiB, C.SEEK_HOLE), 512 * MiB + 4 * KiB);
  t.deepEqual(readAt(dest, data.length, 512 * MiB), data);
  t.true(readAt(dest, 4 * KiB, GiB - 4 * KiB).equals(Buffer.alloc(4 * KiB)));
});

test('copyData copies dense content exactly and keeps a trailing hole', async (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const content = randomBytes(3 * MiB + 123);
  const src = create(t, dfd, 'src', content);
  native.ftruncate(src, 10 * MiB);
  const dest = create(t, dfd, 'dest');
  await native.copyData(src, dest);
  t.is(native.fstat(dest).size, 10 * MiB);
  t.true(readAt(dest, content.length, 0).equals(content));
  t.true(native.lseek(dest, 0, C.SEEK_HOLE) <= 3 * MiB + 4 * KiB);

  const empty = create(t, dfd, 'empty');
  const emptyCopy = create(t, dfd, 'emptyCopy');
  await native.copyData(empty, emptyCopy);
  t.is(native.fstat(emptyCopy).size, 0);
});

test('copyData falls back to read/write across filesystems, holes included', async (t) => {
  const shm = openDir(t, tempDir(t, '/dev/shm'));
  const dfd = openDir(t, tempDir(t));
  const head = randomBytes(3 * MiB + 7);
  const tail = randomBytes(4 * KiB);
  const src = create(t, shm, 'src', head);
  fs.writeSync(src, tail, 0, tail.length, 20 * MiB);
  native.ftruncate(src, 30 * MiB);
  const dest = create(t, dfd, 'dest');

  await native.copyData(src, dest);
  t.is(native.fstat(dest).size, 30 * MiB);
  t.true(readAt(dest, head.length, 0).equals(head));
  t.true(readAt(dest, tail.length, 20 * MiB).equals(tail));
  t.true(readAt(dest, MiB, 10 * MiB).equals(Buffer.alloc(MiB)));
  t.true(native.fstat(dest).blocks * 512 < 4 * MiB);
  t.is(native.lseek(dest, 10 * MiB, C.SEEK_DATA), 20 * MiB);
});

test('copyData and fsync reject with errno errors', async (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const src = create(t, dfd, 'src', 'x');
  await rejectsErrno(t, native.copyData(-1, src), 'EBADF', 'fstat');
  const readOnly = track(t, native.openat(dfd, 'src', C.O_RDONLY, 0));
  // FICLONE or, where it is unsupported, copy_file_range sees the read-only dest.
  const err = (await t.throwsAsync(native.copyData(src, readOnly))) as NativeError;
  t.is(err.code, 'EBADF');
  t.true(['ioctl', 'copy_file_range'].includes(err.syscall), err.syscall);
  await rejectsErrno(t, native.fsync(-1), 'EBADF', 'fsync');
});

test('fsync resolves once data is written', async (t) => {
  const dir = tempDir(t);
  const dfd = openDir(t, dir);
  const fd = create(t, dfd, 'f', 'durable');
  const promise = native.fsync(fd);
  t.true(promise instanceof Promise);
  t.is(await promise, undefined);
  await native.fsync(dfd);
});

test('umount2 detaches a mount, and says EINVAL for a non-mount point', (t) => {
  const dir = tempDir(t);
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  throwsErrno(t, () => native.umount2(mnt, 0), 'EINVAL', 'umount2');
  throwsErrno(t, () => native.umount2(path.join(dir, 'missing'), C.MNT_DETACH), 'ENOENT', 'umount2');

  const parentDev = native.fstatat(C.AT_FDCWD, dir, 0).dev;
  try {
    execFileSync('mount', ['-t', 'tmpfs', 'vefs-test', mnt], { stdio: 'pipe' });
  } catch (e) {
    t.log(`mount unavailable, only the error paths ran: ${(e as Error).message}`);
    return;
  }
  t.teardown(() => {
    try {
      native.umount2(mnt, C.MNT_DETACH);
    } catch {
      // Already unmounted by the test.
    }
  });
  t.not(native.fstatat(C.AT_FDCWD, mnt, 0).dev, parentDev);
  native.umount2(mnt, 0);
  t.is(native.fstatat(C.AT_FDCWD, mnt, 0).dev, parentDev);

  execFileSync('mount', ['-t', 'tmpfs', 'vefs-test', mnt], { stdio: 'pipe' });
  const busy = native.openat(C.AT_FDCWD, mnt, C.O_RDONLY | C.O_DIRECTORY, 0);
  try {
    throwsErrno(t, () => native.umount2(mnt, 0), 'EBUSY', 'umount2');
    native.umount2(mnt, C.MNT_DETACH);
  } finally {
    native.close(busy);
  }
  t.is(native.fstatat(C.AT_FDCWD, mnt, 0).dev, parentDev);
});
