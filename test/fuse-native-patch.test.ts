// Checks the behaviour native/patches/fuse-native+2.2.6.patch adds to
// fuse-native, against a real kernel mount of a tiny in-memory filesystem.
//
// This process serves the mounts, so it must never touch them with
// synchronous (or thread-pool) I/O of its own: every look at a mount is made
// by a child process started with the async execFile.
import test, { type ExecutionContext } from 'ava'
import { execFile, execFileSync } from 'node:child_process'
import { constants as fsc, readFileSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import {
  Fuse,
  type FuseInstance,
  type FuseOperations,
  type FuseOptions,
  type FuseStat,
  type FuseTimespec,
} from '../src/vefs/binding/fuse-native-api.js'

const execFileP = promisify(execFile)

async function sh(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { env: { ...process.env, ...env }, timeout: 60_000 })
  return stdout.trim()
}

async function py(script: string, ...args: string[]): Promise<string> {
  return sh('python3', ['-c', script, ...args])
}

// Last resort if the worker dies (uncaught exception) before the teardowns:
// a lazy umount needs no answer from this process, so the synchronous call
// cannot deadlock on our own mount.
const liveMountpoints = new Map<string, string>()
process.on('exit', () => {
  const isMounted = (mnt: string): boolean =>
    readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1] === mnt)
  for (const [mnt, dir] of liveMountpoints) {
    try {
      if (isMounted(mnt)) execFileSync('umount', ['-l', mnt], { stdio: 'ignore', timeout: 10_000 })
      if (!isMounted(mnt)) rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
})

async function mountedAt(mnt: string): Promise<boolean> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  return mounts.split('\n').some((line) => line.split(' ')[1] === mnt)
}

async function fuseMountLine(mnt: string): Promise<string | undefined> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  return mounts.split('\n').find((line) => line.split(' ')[1] === mnt)
}

function unmountInstance(fuse: FuseInstance): Promise<void> {
  return new Promise((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())))
}

function mountInstance(fuse: FuseInstance): Promise<void> {
  return new Promise((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())))
}

// Runs even when the test failed: the instance's own unmount first, then a
// plain lazy umount, and the temp dir only once nothing is mounted on it.
async function cleanup(fuses: FuseInstance[], mnt: string, dir: string): Promise<void> {
  for (const fuse of fuses) {
    if (!(await mountedAt(mnt))) break
    await Promise.race([
      unmountInstance(fuse).catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 10_000).unref()),
    ])
  }
  if (await mountedAt(mnt)) await sh('umount', ['-l', mnt]).catch(() => undefined)
  if (!(await mountedAt(mnt))) {
    liveMountpoints.delete(mnt)
    await rm(dir, { recursive: true, force: true })
  }
}

interface Mounted {
  mnt: string
  dir: string
  fuse: FuseInstance
}

async function tempMountpoint(t: ExecutionContext, fuses: FuseInstance[]): Promise<{ mnt: string; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fuse-native-patch-'))
  const mnt = path.join(dir, 'mnt')
  await mkdir(mnt)
  liveMountpoints.set(mnt, dir)
  t.teardown(() => cleanup(fuses, mnt, dir))
  return { mnt, dir }
}

async function mountMem(t: ExecutionContext, memfs: MemFs, opts: FuseOptions = {}): Promise<Mounted> {
  const fuses: FuseInstance[] = []
  const { mnt, dir } = await tempMountpoint(t, fuses)
  const fuse = new Fuse(mnt, memfs.ops(), opts)
  fuses.push(fuse)
  await mountInstance(fuse)
  t.true(await mountedAt(mnt), 'mounted')
  return { mnt, dir, fuse }
}

const NS = 1_000_000_000n
const S_IFREG = 0o100000
const S_IFDIR = 0o040000

interface MemNode {
  ino: bigint | number
  mode: number
  nlink: bigint | number
  data: Buffer
  reportSize?: bigint
  atimeNs: bigint
  mtimeNs: bigint
  ctimeNs: bigint
  // Set only for nodes whose times should go over as Dates (old API).
  dates?: { atime: Date; mtime: Date; ctime: Date }
}

interface Call {
  op: string
  path: string | null
  args: unknown[]
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n
}

// A flat filesystem: a root directory holding files.
class MemFs {
  readonly files = new Map<string, MemNode>()
  readonly fds = new Map<number, MemNode>()
  readonly calls: Call[] = []
  readonly slowReads = new Map<string, number>()
  private nextFd = 10
  private nextIno = 100n
  readonly root: MemNode = {
    ino: 1n,
    mode: S_IFDIR | 0o755,
    nlink: 2,
    data: Buffer.alloc(0),
    atimeNs: 0n,
    mtimeNs: 0n,
    ctimeNs: 0n,
  }

  add(name: string, init: Partial<MemNode> = {}): MemNode {
    const t = 1_600_000_000n * NS
    const node: MemNode = {
      ino: this.nextIno++,
      mode: S_IFREG | 0o644,
      nlink: 1,
      data: Buffer.alloc(0),
      atimeNs: t,
      mtimeNs: t,
      ctimeNs: t,
      ...init,
    }
    this.files.set('/' + name, node)
    return node
  }

  callsOf(op: string): Call[] {
    return this.calls.filter((c) => c.op === op)
  }

  static stat(node: MemNode): FuseStat {
    const base = {
      mode: node.mode,
      uid: 0,
      gid: 0,
      size: node.reportSize ?? node.data.length,
      ino: node.ino,
      nlink: node.nlink,
      blksize: 4096,
      blocks: Math.ceil(node.data.length / 512),
    }
    if (node.dates) return { ...base, ...node.dates }
    return { ...base, atimeNs: node.atimeNs, mtimeNs: node.mtimeNs, ctimeNs: node.ctimeNs }
  }

  private lookup(p: string): MemNode | undefined {
    return p === '/' ? this.root : this.files.get(p)
  }

  private record(op: string, p: string | null, ...args: unknown[]): void {
    this.calls.push({ op, path: p, args })
  }

  ops(): FuseOperations {
    const resolveTime = (t: FuseTimespec, current: bigint): bigint => {
      if (t.nsec === Fuse.UTIME_OMIT) return current
      if (t.nsec === Fuse.UTIME_NOW) return nowNs()
      return BigInt(t.sec) * NS + BigInt(t.nsec)
    }
    const byFd = (fd: number): MemNode | undefined => this.fds.get(fd)
    return {
      getattr: (p, cb) => {
        this.record('getattr', p)
        const node = this.lookup(p)
        if (!node) return cb(Fuse.ENOENT)
        return cb(0, MemFs.stat(node))
      },
      fgetattr: (p, fd, cb) => {
        this.record('fgetattr', p, fd)
        const node = byFd(fd)
        if (!node) return cb(Fuse.EBADF)
        return cb(0, MemFs.stat(node))
      },
      readdir: (p, cb) => {
        this.record('readdir', p)
        if (p !== '/') return cb(Fuse.ENOTDIR)
        const names = [...this.files.keys()].map((k) => k.slice(1))
        const stats = [...this.files.values()].map((n) => MemFs.stat(n))
        return cb(0, names, stats)
      },
      open: (p, flags, cb) => {
        this.record('open', p, flags)
        const node = this.lookup(p)
        if (!node) return cb(Fuse.ENOENT)
        const fd = this.nextFd++
        this.fds.set(fd, node)
        return cb(0, fd)
      },
      create: (p, mode, flags, cb) => {
        this.record('create', p, mode, flags)
        if (this.files.has(p) && flags & fsc.O_EXCL) return cb(Fuse.EEXIST)
        const node = this.add(p.slice(1), { mode: S_IFREG | (mode & 0o7777) })
        const fd = this.nextFd++
        this.fds.set(fd, node)
        return cb(0, fd)
      },
      read: (p, fd, buf, len, pos, cb) => {
        this.record('read', p, fd, len, pos)
        const node = byFd(fd)
        if (!node) return cb(Fuse.EBADF)
        const reply = (): void => cb(node.data.copy(buf, 0, pos, Math.min(node.data.length, pos + len)))
        const delay = p === null ? undefined : this.slowReads.get(p)
        if (delay !== undefined) setTimeout(reply, delay)
        else reply()
      },
      write: (p, fd, buf, len, pos, cb) => {
        this.record('write', p, fd, len, pos)
        const node = byFd(fd)
        if (!node) return cb(Fuse.EBADF)
        if (node.data.length < pos + len) {
          const grown = Buffer.alloc(pos + len)
          node.data.copy(grown)
          node.data = grown
        }
        buf.copy(node.data, pos, 0, len)
        node.mtimeNs = nowNs()
        return cb(len)
      },
      truncate: (p, size, cb) => {
        this.record('truncate', p, size)
        const node = this.lookup(p)
        if (!node) return cb(Fuse.ENOENT)
        node.data = resize(node.data, size)
        return cb(0)
      },
      ftruncate: (p, fd, size, cb) => {
        this.record('ftruncate', p, fd, size)
        const node = byFd(fd)
        if (!node) return cb(Fuse.EBADF)
        node.data = resize(node.data, size)
        return cb(0)
      },
      utimens: (p, atime, mtime, cb) => {
        this.record('utimens', p, atime, mtime)
        const node = this.lookup(p)
        if (!node) return cb(Fuse.ENOENT)
        node.atimeNs = resolveTime(atime, node.atimeNs)
        node.mtimeNs = resolveTime(mtime, node.mtimeNs)
        return cb(0)
      },
      flush: (p, fd, cb) => {
        this.record('flush', p, fd)
        return cb(byFd(fd) ? 0 : Fuse.EBADF)
      },
      fsync: (p, datasync, fd, cb) => {
        this.record('fsync', p, datasync, fd)
        return cb(byFd(fd) ? 0 : Fuse.EBADF)
      },
      release: (p, fd, cb) => {
        this.record('release', p, fd)
        this.fds.delete(fd)
        return cb(0)
      },
      unlink: (p, cb) => {
        this.record('unlink', p)
        if (!this.files.delete(p)) return cb(Fuse.ENOENT)
        return cb(0)
      },
      rename: (src, dest, cb) => {
        this.record('rename', src, dest)
        const node = this.files.get(src)
        if (!node) return cb(Fuse.ENOENT)
        this.files.delete(src)
        this.files.set(dest, node)
        return cb(0)
      },
    }
  }
}

function resize(data: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size)
  data.copy(out, 0, 0, Math.min(size, data.length))
  return out
}

test('the rebuilt, patched binary is the one loaded', async (t) => {
  const maps = await readFile('/proc/self/maps', 'utf8')
  t.regex(maps, /\/node_modules\/fuse-native\/build\/Release\/fuse\.node\n/)
  t.notRegex(maps, /fuse-native\/prebuilds\//)
  t.is(Fuse.UTIME_NOW, 2 ** 30 - 1)
  t.is(Fuse.UTIME_OMIT, 2 ** 30 - 2)
})

test('getattr carries nanoseconds, from BigInt ns and (ms-precise) Dates', async (t) => {
  const memfs = new MemFs()
  memfs.add('ns', {
    atimeNs: 1_111_111_111_987_654_321n,
    mtimeNs: 1_234_567_890_123_456_789n,
    ctimeNs: 1_300_000_000_000_000_001n,
  })
  memfs.add('date', {
    dates: { atime: new Date(1_234_567_890_123), mtime: new Date(1_000_000_000_999), ctime: new Date(5) },
  })
  memfs.add('old', { atimeNs: -1_500_000_000n, mtimeNs: -86_400n * NS + 7n, ctimeNs: 0n })
  const { mnt } = await mountMem(t, memfs)
  const files = ['ns', 'date', 'old'].map((name) => path.join(mnt, name))
  const out = await sh('stat', ['-c', '%n %.9X %.9Y %.9Z', ...files])
  t.deepEqual(out.split('\n'), [
    `${mnt}/ns 1111111111.987654321 1234567890.123456789 1300000000.000000001`,
    `${mnt}/date 1234567890.123000000 1000000000.999000000 0.005000000`,
    `${mnt}/old -1.500000000 -86399.999999993 0.000000000`,
  ])
})

test('touch -m -d sets exactly the mtime (to the ns) and leaves the atime', async (t) => {
  const memfs = new MemFs()
  memfs.add('f', { atimeNs: 1_500_000_000_111_111_111n, mtimeNs: 1_500_000_000_222_222_222n })
  const { mnt } = await mountMem(t, memfs)
  const f = path.join(mnt, 'f')
  await sh('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789', f], { TZ: 'UTC' })
  t.is(await sh('stat', ['-c', '%.9X %.9Y', f]), '1500000000.111111111 981173106.123456789')
  const calls = memfs.callsOf('utimens')
  t.is(calls.length, 1)
  t.deepEqual(calls[0]!.args, [
    { sec: 0, nsec: Fuse.UTIME_OMIT },
    { sec: 981173106, nsec: 123456789 },
  ])
})

test('touch -a -d sets exactly the atime (to the ns) and leaves the mtime', async (t) => {
  const memfs = new MemFs()
  memfs.add('f', { atimeNs: 1_500_000_000_111_111_111n, mtimeNs: 1_500_000_000_222_222_222n })
  const { mnt } = await mountMem(t, memfs)
  const f = path.join(mnt, 'f')
  await sh('touch', ['-a', '-d', '1999-12-31 23:59:59.000000001', f], { TZ: 'UTC' })
  t.is(await sh('stat', ['-c', '%.9X %.9Y', f]), '946684799.000000001 1500000000.222222222')
  const calls = memfs.callsOf('utimens')
  t.is(calls.length, 1)
  t.deepEqual(calls[0]!.args, [
    { sec: 946684799, nsec: 1 },
    { sec: 0, nsec: Fuse.UTIME_OMIT },
  ])
})

test('utimensat with two different times delivers both (mtime is no longer a copy of atime)', async (t) => {
  const memfs = new MemFs()
  memfs.add('f')
  const { mnt } = await mountMem(t, memfs)
  const f = path.join(mnt, 'f')
  await py('import os, sys; os.utime(sys.argv[1], ns=(1000000000123456789, 2000000000987654321))', f)
  t.is(await sh('stat', ['-c', '%.9X %.9Y', f]), '1000000000.123456789 2000000000.987654321')
  t.deepEqual(memfs.callsOf('utimens')[0]?.args, [
    { sec: 1000000000, nsec: 123456789 },
    { sec: 2000000000, nsec: 987654321 },
  ])
})

test('touch without a date passes UTIME_NOW for both times', async (t) => {
  const memfs = new MemFs()
  memfs.add('f', { atimeNs: 5n * NS, mtimeNs: 6n * NS })
  const { mnt } = await mountMem(t, memfs)
  const f = path.join(mnt, 'f')
  const before = nowNs()
  await sh('touch', [f])
  const after = nowNs()
  t.deepEqual(memfs.callsOf('utimens').map((c) => c.args), [
    [
      { sec: 0, nsec: Fuse.UTIME_NOW },
      { sec: 0, nsec: Fuse.UTIME_NOW },
    ],
  ])
  const [x, y] = (await sh('stat', ['-c', '%X %Y', f])).split(' ').map((s) => BigInt(s) * NS)
  for (const v of [x!, y!]) {
    t.true(v >= before - NS && v <= after + NS, `time ${v} not within the touch`)
  }
})

test('useIno: 64-bit inode numbers reach stat and readdir; nlink > 2^16; BigInt sizes', async (t) => {
  const memfs = new MemFs()
  memfs.add('big', { ino: 2n ** 40n + 5n, nlink: 70_000n, reportSize: 2n ** 33n + 7n })
  memfs.add('num', { ino: 2 ** 40 + 7, nlink: 65_537 })
  const { mnt } = await mountMem(t, memfs, { useIno: true })
  const out = await sh('stat', ['-c', '%n %i %h %s', path.join(mnt, 'big'), path.join(mnt, 'num')])
  t.deepEqual(out.split('\n'), [
    `${mnt}/big ${2n ** 40n + 5n} 70000 ${2n ** 33n + 7n}`,
    `${mnt}/num ${2 ** 40 + 7} 65537 0`,
  ])
  const listing = await py(
    'import os, sys; print(" ".join("%s=%d" % (e.name, e.inode()) for e in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name)))',
    mnt,
  )
  t.is(listing, `big=${2n ** 40n + 5n} num=${2 ** 40 + 7}`)
})

test('create receives the open flags (O_EXCL, O_APPEND, access mode) and the mode', async (t) => {
  const memfs = new MemFs()
  const { mnt } = await mountMem(t, memfs)
  const f = path.join(mnt, 'new')
  const out = await py(
    [
      'import os, sys',
      'os.umask(0o022)',
      'fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o640)',
      'os.write(fd, b"hello")',
      'os.close(fd)',
      'try:',
      '    os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)',
      '    print("reopened")',
      'except FileExistsError:',
      '    print("EEXIST")',
    ].join('\n'),
    f,
  )
  t.is(out, 'EEXIST')
  const creates = memfs.callsOf('create')
  t.is(creates.length, 1)
  const [mode, flags] = creates[0]!.args as [number, number]
  t.is(creates[0]!.path, '/new')
  t.is(mode & 0o777, 0o640)
  t.is(flags & fsc.O_EXCL, fsc.O_EXCL, 'O_EXCL')
  t.is(flags & fsc.O_APPEND, fsc.O_APPEND, 'O_APPEND')
  t.is(flags & 3, fsc.O_WRONLY, 'access mode')
  t.is(memfs.files.get('/new')?.data.toString(), 'hello')
})

test('hard_remove: an unlinked but open file stays usable, handlers get a null path', async (t) => {
  const memfs = new MemFs()
  memfs.add('doomed', { data: Buffer.from('hello world') })
  // attr_timeout=0 makes lseek(SEEK_END) ask fgetattr instead of the cache.
  const { mnt } = await mountMem(t, memfs, { options: ['hard_remove', 'attr_timeout=0', 'entry_timeout=0'] })
  const out = await py(
    [
      'import os, sys',
      'p = sys.argv[1]',
      'fd = os.open(p, os.O_RDWR)',
      'os.unlink(p)',
      'print(os.path.exists(p))',
      'print(",".join(sorted(os.listdir(os.path.dirname(p)))) or "-")',
      'print(os.pread(fd, 100, 0).decode())',
      'os.pwrite(fd, b"J", 0)',
      'os.fsync(fd)',
      'print(os.lseek(fd, 0, os.SEEK_END))',
      'os.ftruncate(fd, 5)',
      'print(os.lseek(fd, 0, os.SEEK_END))',
      'os.close(fd)',
    ].join('\n'),
    path.join(mnt, 'doomed'),
  )
  t.deepEqual(out.split('\n'), ['False', '-', 'hello world', '11', '5'])
  t.is(memfs.callsOf('unlink').length, 1)
  t.is(memfs.callsOf('rename').length, 0, 'no .fuse_hidden rename')
  const nullPathOps = new Set(memfs.calls.filter((c) => c.path === null).map((c) => c.op))
  for (const op of ['read', 'write', 'fsync', 'ftruncate', 'fgetattr', 'flush', 'release']) {
    t.true(nullPathOps.has(op), `${op} got a null path`)
  }
  t.is(memfs.fds.size, 0, 'released')
  t.false(memfs.files.has('/doomed'))
})

test('without hard_remove libfuse hides the open file instead (control)', async (t) => {
  const memfs = new MemFs()
  memfs.add('doomed', { data: Buffer.from('x') })
  const { mnt } = await mountMem(t, memfs)
  const out = await py(
    [
      'import os, sys',
      'p = sys.argv[1]',
      'fd = os.open(p, os.O_RDONLY)',
      'os.unlink(p)',
      'print(os.read(fd, 10).decode())',
      'os.close(fd)',
    ].join('\n'),
    path.join(mnt, 'doomed'),
  )
  t.is(out, 'x')
  const renames = memfs.callsOf('rename')
  t.is(renames.length, 1)
  t.regex(String(renames[0]!.args[0]), /^\/\.fuse_hidden/)
})

test('timeout: false lets an operation run past the 15 s default', async (t) => {
  const memfs = new MemFs()
  memfs.add('slow', { data: Buffer.from('copied up') })
  memfs.slowReads.set('/slow', 16_000)
  const { mnt } = await mountMem(t, memfs, { timeout: false })
  t.is(await sh('cat', [path.join(mnt, 'slow')]), 'copied up')
})

test('timeout: { default: false } disables it as well', async (t) => {
  const memfs = new MemFs()
  memfs.add('slow', { data: Buffer.from('copied up') })
  memfs.slowReads.set('/slow', 16_000)
  const { mnt } = await mountMem(t, memfs, { timeout: { default: false } })
  t.is(await sh('cat', [path.join(mnt, 'slow')]), 'copied up')
})

test('a short timeout still answers ETIMEDOUT (control)', async (t) => {
  const memfs = new MemFs()
  memfs.add('slow', { data: Buffer.from('copied up') })
  memfs.slowReads.set('/slow', 2_000)
  const { mnt } = await mountMem(t, memfs, { timeout: 300 })
  const err = await t.throwsAsync(sh('cat', [path.join(mnt, 'slow')]))
  t.regex(String((err as Error & { stderr?: string }).stderr), /Connection timed out/)
})

test('the options string: use_ino, userId, verbatim options', (t) => {
  // _fuseOptions is internal; user_id cannot be checked on a real mount as
  // libfuse 2.9 on Linux sets it itself and rejects it from the caller.
  const build = (opts: FuseOptions): string =>
    (new Fuse('/nonexistent', {}, opts) as unknown as { _fuseOptions(): string })._fuseOptions()
  t.is(build({ userId: 4321 }), '-ouser_id=4321')
  t.is(build({ useIno: true, options: ['hard_remove', 'attr_timeout=1.5'] }), '-ouse_ino,hard_remove,attr_timeout=1.5')
  t.is(build({ allowOther: true, options: [] }), '-oallow_other')
  t.is(build({}), '')
})

test('verbatim options reach libfuse and the kernel; unknown ones fail without leaving a mount', async (t) => {
  const memfs = new MemFs()
  const { mnt } = await mountMem(t, memfs, { allowOther: true, options: ['max_read=65536', 'big_writes', 'hard_remove'] })
  const line = await fuseMountLine(mnt)
  t.truthy(line)
  t.regex(line!, /\ballow_other\b/)
  t.regex(line!, /\bmax_read=65536\b/)

  const fuses: FuseInstance[] = []
  const other = await tempMountpoint(t, fuses)
  const bad = new Fuse(other.mnt, memfs.ops(), { options: ['no_such_option_vefs'] })
  fuses.push(bad)
  await t.throwsAsync(mountInstance(bad))
  t.false(await mountedAt(other.mnt))
})

test('instance unmount works here (no fusermount), and the mountpoint can be mounted again', async (t) => {
  const fuses: FuseInstance[] = []
  const { mnt } = await tempMountpoint(t, fuses)
  for (const content of ['first', 'second']) {
    const memfs = new MemFs()
    memfs.add('f', { data: Buffer.from(content) })
    const fuse = new Fuse(mnt, memfs.ops())
    fuses.unshift(fuse)
    await mountInstance(fuse)
    t.is(await sh('cat', [path.join(mnt, 'f')]), content)
    let ticks = 0
    const timer = setInterval(() => ticks++, 0)
    await unmountInstance(fuse)
    clearInterval(timer)
    t.false(await mountedAt(mnt), 'gone from /proc/mounts')
    t.true(fuse.closed)
    t.true(ticks > 0, 'event loop kept running during unmount')
  }
})

test('Fuse.unmount (static) unmounts lazily; the instance unmount afterwards still succeeds', async (t) => {
  const memfs = new MemFs()
  const { mnt, fuse } = await mountMem(t, memfs)
  await new Promise<void>((resolve, reject) => Fuse.unmount(mnt, (err) => (err ? reject(err) : resolve())))
  t.false(await mountedAt(mnt))
  await unmountInstance(fuse)
  t.true(fuse.closed)
})

test('a mount unmounted from outside no longer keeps the serving process alive', async (t) => {
  const fuses: FuseInstance[] = []
  const { mnt } = await tempMountpoint(t, fuses)
  const script = [
    "const Fuse = require('fuse-native')",
    "const { execFile } = require('child_process')",
    'const fuse = new Fuse(process.argv[1], {})',
    'fuse.mount((err) => {',
    '  if (err) throw err',
    "  execFile('umount', ['-l', process.argv[1]], (err) => { if (err) throw err })",
    '})',
  ].join('\n')
  const started = Date.now()
  await execFileP(process.execPath, ['-e', script, mnt], { cwd: process.cwd(), timeout: 20_000 })
  t.true(Date.now() - started < 20_000)
  t.false(await mountedAt(mnt))
})
