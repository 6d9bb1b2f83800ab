// Mounting the two filesystems the reference suites compare — kernel overlayfs
// and VEFS — plus per-test scratch space that is always cleaned up, even when
// a test fails half-way with mounts still standing.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';

const run = promisify(execFile);

export interface MountOptions {
  /** Template layers, topmost first (as overlayfs lowerdir). */
  templates: string[];
  privateDir: string;
  workDir: string;
  mountpoint: string;
  /** VEFS_STATE_DIR for the VEFS server; ignored by mountOverlay. */
  stateDir?: string;
  /** --binding for VEFS; without it the server's default (VEFS_BINDING, as test/run.mjs sets it). */
  binding?: 'kernel' | 'fuse-native';
}

export interface Mounted {
  mountpoint: string;
  unmount(): Promise<void>;
}

export interface MountEntry {
  source: string;
  target: string;
  type: string;
  options: string;
}

export const VEFS_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Lets the suite be developed against fuse-overlayfs before VEFS exists. */
export function vefsTarget(): 'vefs' | 'fuse-overlayfs' {
  return process.env.VEFS_DIFF_TARGET === 'fuse-overlayfs' ? 'fuse-overlayfs' : 'vefs';
}

// /proc/mounts escapes space, tab, newline and backslash as octal.
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** FUSE and overlay mounts, optionally only those at or below `under`. */
export function leftoverMounts(under?: string): MountEntry[] {
  const entries = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [source, target, type, options] = line.split(' ');
    return { source, target: unescapeMountField(target), type, options };
  });
  return entries.filter((m) => /^fuse($|\.)|^overlay$/.test(m.type)
    && (under === undefined || m.target === under || m.target.startsWith(under + '/')));
}

function isMounted(mountpoint: string): boolean {
  return leftoverMounts().some((m) => m.target === mountpoint);
}

function prepareDirs(opts: MountOptions): void {
  for (const d of [opts.privateDir, opts.workDir, opts.mountpoint]) fs.mkdirSync(d, { recursive: true });
}

/** A helper process outlived its time limit: the filesystem behind it likely stopped answering. */
export class TimedOut extends Error {}

/**
 * What a hang leaves to read once the test's scratch is gone (CI keeps only
 * the output): the server's last log lines; where each thread of this state
 * dir's server and of its children waits; every other process waiting in the
 * kernel or on a FUSE reply.
 */
function hangReport(stateDir: string | undefined): string {
  const lines: string[] = [];
  const log = stateDir && path.join(stateDir, 'server.log');
  if (log && fs.existsSync(log)) lines.push('server.log, last lines:', ...fs.readFileSync(log, 'utf8').trimEnd().split('\n').slice(-30));
  const read = (file: string): string => {
    try {
      return fs.readFileSync(file, 'latin1');
    } catch {
      return ''; // exited meanwhile
    }
  };
  const servers = new Set(stateDir ? vefsServerPids(stateDir) : []);
  const others: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const stat = read(`/proc/${pid}/stat`).replace(/^.*\) /, '').split(' ');
    const cmd = read(`/proc/${pid}/cmdline`).split('\0').join(' ').trim().slice(0, 160);
    if (servers.has(Number(pid)) || servers.has(Number(stat[1]))) {
      const tasks = fs.existsSync(`/proc/${pid}/task`) ? fs.readdirSync(`/proc/${pid}/task`) : [];
      const waits = tasks.map((t) => `${t}:${read(`/proc/${pid}/task/${t}/stat`).replace(/^.*\) /, '')[0]}:${read(`/proc/${pid}/task/${t}/wchan`)}`);
      lines.push(`server side: ${pid} (parent ${stat[1]}) ${cmd}; threads ${waits.join(' ')}`);
      const stack = read(`/proc/${pid}/stack`).trim();
      if (stack) lines.push(...stack.split('\n').map((l) => `    ${l}`));
      continue;
    }
    const wchan = read(`/proc/${pid}/wchan`);
    if (stat[0] === 'D' || /fuse|request_wait/.test(wchan)) others.push(`waiting: ${pid} ${stat[0]} ${wchan} ${cmd}`);
  }
  lines.push(...others.slice(0, 12), ...(others.length > 12 ? [`... and ${others.length - 12} more waiting`] : []));
  return lines.join('\n');
}

async function runOrExplain(what: string, file: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run(file, args, { env, timeout: 60_000 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; killed?: boolean };
    const text = `${file} ${args.join(' ')}\n${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`;
    if (e.killed) throw new TimedOut(`${what} timed out: ${text}\n${hangReport(env?.VEFS_STATE_DIR)}`);
    throw new Error(`${what} failed: ${text}`);
  }
}

function handle(mountpoint: string, unmountCmd: () => Promise<void>): Mounted {
  return {
    mountpoint,
    async unmount() {
      await unmountCmd();
      if (isMounted(mountpoint)) throw new Error(`${mountpoint} is still mounted after unmount`);
    },
  };
}

/**
 * Kernel overlayfs, the reference. index is pinned off and metacopy on so
 * the upper layer's format does not depend on the kernel's build-time
 * defaults; metacopy=on because VEFS writes metacopy files too.
 */
export async function mountOverlay(opts: MountOptions): Promise<Mounted> {
  prepareDirs(opts);
  const o = `lowerdir=${opts.templates.join(':')},upperdir=${opts.privateDir},workdir=${opts.workDir},redirect_dir=on,index=off,metacopy=on`;
  await runOrExplain('overlay mount', 'mount', ['-t', 'overlay', 'overlay', '-o', o, opts.mountpoint]);
  return handle(opts.mountpoint, () => runOrExplain('overlay umount', 'umount', [opts.mountpoint]));
}

function vefsEnv(stateDir: string | undefined): NodeJS.ProcessEnv {
  return stateDir === undefined ? process.env : { ...process.env, VEFS_STATE_DIR: stateDir };
}

/** VEFS through its CLI (or fuse-overlayfs when VEFS_DIFF_TARGET says so). */
export async function mountVefs(opts: MountOptions): Promise<Mounted> {
  prepareDirs(opts);
  if (vefsTarget() === 'fuse-overlayfs') {
    const o = `lowerdir=${opts.templates.join(':')},upperdir=${opts.privateDir},workdir=${opts.workDir}`;
    await runOrExplain('fuse-overlayfs mount', 'fuse-overlayfs', ['-o', o, opts.mountpoint]);
    if (!isMounted(opts.mountpoint)) throw new Error(`fuse-overlayfs returned but ${opts.mountpoint} is not mounted`);
    return handle(opts.mountpoint, () => runOrExplain('fuse-overlayfs umount', 'fusermount3', ['-u', opts.mountpoint]));
  }
  const env = vefsEnv(opts.stateDir);
  await runOrExplain('vefs mount', process.execPath, [VEFS_CLI, 'mount', '--template', opts.templates.join(':'),
    '--private', opts.privateDir, '--work', opts.workDir, ...(opts.binding ? ['--binding', opts.binding] : []),
    opts.mountpoint], env);
  if (!isMounted(opts.mountpoint)) throw new Error(`vefs mount returned but ${opts.mountpoint} is not in /proc/mounts`);
  return handle(opts.mountpoint, () => runOrExplain('vefs umount', process.execPath, [VEFS_CLI, 'umount', opts.mountpoint], env));
}

/** Runs the vefs CLI with a state dir; resolves to its stdout. */
export async function vefsCli(stateDir: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [VEFS_CLI, ...args], { env: vefsEnv(stateDir), timeout: 60_000 });
  return stdout;
}

/** Stops the VEFS server of a state dir. */
export async function shutdownVefs(stateDir: string): Promise<void> {
  await runOrExplain('vefs shutdown', process.execPath, [VEFS_CLI, 'shutdown'], vefsEnv(stateDir));
}

/** Pids of processes running with this VEFS_STATE_DIR (the server a test started) or holding its descriptors. */
function vefsServerPids(stateDir: string): number[] {
  const wanted = `VEFS_STATE_DIR=${stateDir}`;
  return [...new Set([...pidsWhere((pid) => readArgs(`/proc/${pid}/environ`).includes(wanted)), ...holderPids(stateDir)])];
}

/** Pids of the descriptor holders started for this state dir. */
export function holderPids(stateDir: string): number[] {
  const holder = path.join(stateDir, 'holder.sock');
  return pidsWhere((pid) => readArgs(`/proc/${pid}/cmdline`).includes(holder));
}

/**
 * The holders of a state dir once there are at most `atMost` of them, or
 * after 5 s: a holder that a drop emptied exits a moment after it answers.
 */
export async function settledHolders(stateDir: string, atMost: number): Promise<number[]> {
  for (let i = 0; i < 50 && holderPids(stateDir).length > atMost; i++) await new Promise((r) => setTimeout(r, 100));
  return holderPids(stateDir);
}

function pidsWhere(mine: (pid: string) => boolean): number[] {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).flatMap((pid) => {
    try {
      return mine(pid) ? [Number(pid)] : [];
    } catch {
      return []; // exited meanwhile, or not ours to read
    }
  });
}

const readArgs = (file: string): string[] => fs.readFileSync(file, 'latin1').split('\0');

export interface Scratch {
  /** Fresh directory under os.tmpdir(), mode 0755 so a non-root user can traverse it. */
  base: string;
  /** VEFS_STATE_DIR for every VEFS mount of this scratch. */
  stateDir: string;
  /** A path below base, created as a directory. */
  dir(...parts: string[]): string;
}

/**
 * Scratch space for one test, removed by its teardown whether the test passed
 * or not.
 */
export function withScratch(t: ExecutionContext, label = 'vefs-test'): Scratch {
  const scratch = makeScratch(label);
  t.teardown(scratch.cleanup);
  return scratch;
}

/**
 * The same for hooks, whose teardown would run too early: the caller runs
 * cleanup, in test.after.always. Cleanup lazily unmounts whatever is still
 * mounted below base (deepest first, so nested mounts come off before their
 * parents), stops the VEFS server if one was started, and removes the tree,
 * clearing immutable flags if rm needs that.
 */
export function makeScratch(label = 'vefs-test'): Scratch & { cleanup(): Promise<void> } {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`));
  fs.chmodSync(base, 0o755);
  const stateDir = path.join(base, 'state');
  const cleanup = async (): Promise<void> => {
    const problems: string[] = [];
    const mounted = leftoverMounts(base).map((m) => m.target).sort((a, b) => b.length - a.length);
    for (const target of mounted) {
      try { await run('umount', ['-l', target]); } catch (err) { problems.push(`umount -l ${target}: ${(err as Error).message}`); }
    }
    // A server that stopped on its own (vefs demo, vefs shutdown) took its socket with it.
    if (vefsTarget() === 'vefs' && fs.existsSync(path.join(stateDir, 'server.sock'))) {
      try {
        await shutdownVefs(stateDir);
      } catch (err) {
        problems.push((err as Error).message);
        // A server left behind would outlive the test run on CI machines.
        for (const pid of vefsServerPids(stateDir)) {
          try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
          problems.push(`killed VEFS server ${pid} of ${stateDir}`);
        }
      }
    }
    // The descriptor holder outlives a server by design; after a clean shutdown both exit soon.
    for (let i = 0; i < 50 && vefsServerPids(stateDir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    for (const pid of vefsServerPids(stateDir)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      problems.push(`killed ${pid}, still running for ${stateDir} after the server stopped`);
    }
    if (problems.length > 0) problems.push(hangReport(stateDir));
    // The server answers EIO only for an exception no rule expected, and logs it: that is a bug.
    const log = path.join(stateDir, 'server.log');
    if (fs.existsSync(log)) {
      const unexpected = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('unexpected error'));
      if (unexpected.length > 0) problems.push(`the VEFS server answered EIO unexpectedly:\n${unexpected.join('\n')}`);
    }
    try {
      fs.rmSync(base, { recursive: true, force: true });
    } catch {
      // VEFS may mark shared template files immutable; chattr complains about
      // FIFOs and symlinks it cannot flag, which is harmless here.
      await run('chattr', ['-R', '-i', base]).catch(() => undefined);
      fs.rmSync(base, { recursive: true, force: true });
    }
    if (problems.length > 0) throw new Error(`scratch cleanup of ${base}:\n${problems.join('\n')}`);
  };
  return {
    base,
    stateDir,
    cleanup,
    dir(...parts: string[]) {
      const d = path.join(base, ...parts);
      fs.mkdirSync(d, { recursive: true });
      return d;
    },
  };
}
