// Filesystem operations as data, so one script can be replayed on several
// mounts (and by a non-root child process) and the outcomes compared.
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { TimedOut } from './mounts.js';
import { typeOf } from './tree.js';

/** [seconds, nanoseconds] */
export type Timespec = [number, number];

export type Step =
  | { op: 'read'; args: { path: string } }
  /** O_RDONLY|O_NOFOLLOW open: ELOOP on a symlink. */
  | { op: 'openNoFollow'; args: { path: string } }
  /** O_CREAT|O_EXCL|O_WRONLY. */
  | { op: 'create'; args: { path: string; data: string; mode?: number } }
  /** O_WRONLY|O_TRUNC of an existing file. */
  | { op: 'overwrite'; args: { path: string; data: string } }
  | { op: 'append'; args: { path: string; data: string } }
  /** pwrite into an existing file without truncating it. */
  | { op: 'writeAt'; args: { path: string; offset: number; data: string } }
  | { op: 'truncate'; args: { path: string; length: number } }
  | { op: 'unlink'; args: { path: string } }
  | { op: 'mkdir'; args: { path: string; mode?: number } }
  | { op: 'rmdir'; args: { path: string } }
  | { op: 'rename'; args: { from: string; to: string } }
  | { op: 'symlink'; args: { target: string; path: string } }
  | { op: 'readlink'; args: { path: string } }
  | { op: 'link'; args: { existing: string; path: string } }
  /** Whether two paths are the same inode. */
  | { op: 'sameFile'; args: { a: string; b: string } }
  | { op: 'stat'; args: { path: string } }
  | { op: 'readdir'; args: { path: string } }
  | { op: 'chmod'; args: { path: string; mode: number } }
  | { op: 'chown'; args: { path: string; uid: number; gid: number } }
  | { op: 'lchown'; args: { path: string; uid: number; gid: number } }
  /** Nanosecond times; noFollow sets them on a symlink itself. */
  | { op: 'utimes'; args: { path: string; atime: Timespec; mtime: Timespec; noFollow?: boolean } }
  | { op: 'setxattr'; args: { path: string; name: string; value: string } }
  | { op: 'getxattr'; args: { path: string; name: string } }
  /** Sorted names. */
  | { op: 'listxattr'; args: { path: string } }
  | { op: 'removexattr'; args: { path: string; name: string } }
  | { op: 'mkfifo'; args: { path: string } }
  | { op: 'mknodChar'; args: { path: string; major: number; minor: number } };

export type StepResult = { ok: true; value?: unknown } | { ok: false; code: string };

export interface WorkloadOptions {
  /** What a path starting with '@outside/' resolves against: a directory off the mount. */
  outside?: string;
}

// glibc's strerror texts (and attr's own for ENODATA), for the CLI tools that
// only report an errno as text.
const MESSAGES: Record<string, string> = {
  'No such file or directory': 'ENOENT',
  'No such attribute': 'ENODATA',
  'No data available': 'ENODATA',
  'Operation not permitted': 'EPERM',
  'Permission denied': 'EACCES',
  'Operation not supported': 'EOPNOTSUPP',
  'File exists': 'EEXIST',
  'Not a directory': 'ENOTDIR',
  'Is a directory': 'EISDIR',
  'Read-only file system': 'EROFS',
  'Too many levels of symbolic links': 'ELOOP',
  'File name too long': 'ENAMETOOLONG',
  'Invalid argument': 'EINVAL',
  'Numerical result out of range': 'ERANGE',
  'No space left on device': 'ENOSPC',
  'Function not implemented': 'ENOSYS',
  'Input/output error': 'EIO',
  'Transport endpoint is not connected': 'ENOTCONN',
};

class CliError extends Error {
  constructor(readonly code: string, message: string) { super(message); }
}

function cli(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    const known = Object.keys(MESSAGES).find((m) => stderr.endsWith(m));
    throw new CliError(known ? MESSAGES[known] : `EUNKNOWN(${stderr})`, stderr);
  }
}

// Short contents verbatim, so that a mismatch message shows them.
function content(buf: Buffer): string {
  return buf.length <= 256 ? buf.toString('utf8') : `${buf.length} bytes, sha256 ${crypto.createHash('sha256').update(buf).digest('hex')}`;
}

function readAll(p: string, flags: number): Buffer {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | flags);
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(1 << 16);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) chunks.push(Buffer.from(buf.subarray(0, n)));
    return Buffer.concat(chunks);
  } finally {
    fs.closeSync(fd);
  }
}

function writeWith(p: string, flags: number, data: string, position: number | null, mode = 0o644): void {
  const fd = fs.openSync(p, flags, mode);
  try {
    fs.writeSync(fd, data, position, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

// GNU touch is the CLI that takes nanoseconds (Node's utimes goes through a double).
function touch(p: string, which: '-a' | '-m', [sec, nsec]: Timespec, noFollow: boolean): void {
  cli('touch', ['-c', which, ...(noFollow ? ['-h'] : []), '-d', `@${sec}.${String(nsec).padStart(9, '0')}`, '--', p]);
}

const C = fs.constants;

function execute(step: Step, at: (p: string) => string): unknown {
  switch (step.op) {
    case 'read': return content(readAll(at(step.args.path), 0));
    case 'openNoFollow': return content(readAll(at(step.args.path), C.O_NOFOLLOW));
    case 'create': return writeWith(at(step.args.path), C.O_WRONLY | C.O_CREAT | C.O_EXCL, step.args.data, null, step.args.mode);
    case 'overwrite': return writeWith(at(step.args.path), C.O_WRONLY | C.O_TRUNC, step.args.data, null);
    case 'append': return writeWith(at(step.args.path), C.O_WRONLY | C.O_APPEND, step.args.data, null);
    case 'writeAt': return writeWith(at(step.args.path), C.O_WRONLY, step.args.data, step.args.offset);
    case 'truncate': return fs.truncateSync(at(step.args.path), step.args.length);
    case 'unlink': return fs.unlinkSync(at(step.args.path));
    case 'mkdir': return fs.mkdirSync(at(step.args.path), step.args.mode ?? 0o755);
    case 'rmdir': return fs.rmdirSync(at(step.args.path));
    case 'rename': return fs.renameSync(at(step.args.from), at(step.args.to));
    case 'symlink': return fs.symlinkSync(step.args.target, at(step.args.path));
    case 'readlink': return fs.readlinkSync(at(step.args.path));
    case 'link': return fs.linkSync(at(step.args.existing), at(step.args.path));
    case 'sameFile': {
      const a = fs.lstatSync(at(step.args.a), { bigint: true });
      const b = fs.lstatSync(at(step.args.b), { bigint: true });
      return a.dev === b.dev && a.ino === b.ino;
    }
    case 'stat': {
      const st = fs.lstatSync(at(step.args.path));
      return { type: typeOf(st), mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid, size: st.isDirectory() ? undefined : st.size };
    }
    case 'readdir': return fs.readdirSync(at(step.args.path)).sort();
    case 'chmod': return fs.chmodSync(at(step.args.path), step.args.mode);
    case 'chown': return fs.chownSync(at(step.args.path), step.args.uid, step.args.gid);
    case 'lchown': return fs.lchownSync(at(step.args.path), step.args.uid, step.args.gid);
    case 'utimes': {
      const p = at(step.args.path);
      // touch -c never creates; the stat gives a missing path its errno.
      if (step.args.noFollow) fs.lstatSync(p); else fs.statSync(p);
      touch(p, '-a', step.args.atime, step.args.noFollow ?? false);
      touch(p, '-m', step.args.mtime, step.args.noFollow ?? false);
      return undefined;
    }
    case 'setxattr': return void cli('setfattr', ['-h', '-n', step.args.name, '-v', step.args.value, '--', at(step.args.path)]);
    case 'getxattr': return cli('getfattr', ['-h', '--absolute-names', '-n', step.args.name, '--only-values', '--', at(step.args.path)]);
    case 'listxattr': {
      const out = cli('getfattr', ['-h', '--absolute-names', '-m', '-', '--', at(step.args.path)]);
      return out.split('\n').filter((l) => l !== '' && !l.startsWith('# file: ')).sort();
    }
    case 'removexattr': return void cli('setfattr', ['-h', '-x', step.args.name, '--', at(step.args.path)]);
    case 'mkfifo': return void cli('mkfifo', ['--', at(step.args.path)]);
    case 'mknodChar': return void cli('mknod', ['--', at(step.args.path), 'c', String(step.args.major), String(step.args.minor)]);
  }
}

/** Runs the steps in order under root; a failing step is recorded and the rest still run. */
export function runWorkload(root: string, steps: readonly Step[], opts: WorkloadOptions = {}): StepResult[] {
  const at = (p: string): string => {
    if (p.startsWith('@outside/')) {
      if (opts.outside === undefined) throw new Error(`${p} needs WorkloadOptions.outside`);
      return path.join(opts.outside, p.slice('@outside/'.length));
    }
    return path.join(root, p);
  };
  return steps.map((step): StepResult => {
    try {
      const value = execute(step, at);
      return value === undefined ? { ok: true } : { ok: true, value };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string') return { ok: false, code };
      throw err;
    }
  });
}

/** One line naming the step for failure messages. */
export function describeStep(index: number, step: Step): string {
  return `step ${index} ${step.op} ${JSON.stringify(step.args)}`;
}

export interface Credentials { uid: number; gid: number }

/**
 * runWorkload in a child process with other credentials (no supplementary
 * groups), for permission checks: the test process itself stays root.
 */
export async function runWorkloadAs(cred: Credentials, root: string, steps: readonly Step[], opts: WorkloadOptions = {}): Promise<StepResult[]> {
  const script = `
    const { runWorkload } = await import(process.argv[1]);
    process.stdout.write(JSON.stringify(runWorkload(process.argv[2], JSON.parse(process.argv[3]), JSON.parse(process.argv[4]))));`;
  try {
    const { stdout } = await promisify(execFile)('setpriv',
      [`--reuid=${cred.uid}`, `--regid=${cred.gid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', script,
        import.meta.url, root, JSON.stringify(steps), JSON.stringify(opts)],
      { timeout: 60_000 });
    return JSON.parse(stdout) as StepResult[];
  } catch (err) {
    if ((err as { killed?: boolean }).killed) throw new TimedOut(`workload as uid ${cred.uid} under ${root} timed out: ${(err as Error).message}`);
    throw err;
  }
}
