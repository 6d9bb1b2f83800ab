// Node's side of native/src/ve-launch.c: starting a VE's PID 1 and running a
// command inside a started VE. Namespaces, pivot_root, /proc and /dev,
// capabilities, no_new_privs and seccomp are all the launcher's: one C
// policy for both, so that exec cannot be looser than start.
import { execFile, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { VE_LAUNCH } from '../../native/index.js';
import { RuntimeError } from './errors.js';
import type { CgroupSet } from './cgroup.js';

const run = promisify(execFile);

const cgroupArgs = (set: CgroupSet): string[] => Object.values(set.dirs).flatMap((d) => ['--cgroup', d]);

export interface StartSpec {
  root: string;
  hostname: string;
  log: string;
  cgroups: CgroupSet;
}

/** Starts PID 1; resolves its host pid once it has exec'd its init. */
export async function launchInit(id: number, spec: StartSpec): Promise<number> {
  try {
    const { stdout } = await run(VE_LAUNCH, ['start', '--root', spec.root, '--hostname', spec.hostname,
      '--log', spec.log, ...cgroupArgs(spec.cgroups)], { timeout: 30_000 });
    const pid = Number(stdout.trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`it printed '${stdout.trim()}', not a pid`);
    return pid;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new RuntimeError('ESTART', `VE ${id} did not start: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

export interface ExecSpec {
  pid: number;
  cgroups: CgroupSet;
  tty: boolean;
  command: string[];
}

/**
 * Runs a command inside with this process's stdin, stdout and stderr, and
 * resolves its exit status. While it runs, this process ignores the
 * terminal's signals: the launcher, in the same process group, gets them and
 * passes them to the command.
 */
export async function launchExec(id: number, spec: ExecSpec): Promise<number> {
  // fd 3 carries the launcher's own failure, so that the command's exit status and stderr stay the command's.
  const args = ['exec', '--pid', String(spec.pid), ...cgroupArgs(spec.cgroups), ...(spec.tty ? ['--tty'] : []),
    '--report-fd', '3', '--', ...spec.command];
  const child = spawn(VE_LAUNCH, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] });
  let failure = '';
  (child.stdio[3] as Readable).setEncoding('utf8').on('data', (c: string) => (failure += c));
  const ignore = (): void => undefined;
  const pass = (sig: NodeJS.Signals) => (): void => void child.kill(sig);
  const handlers: [NodeJS.Signals, () => void][] = [['SIGINT', ignore], ['SIGQUIT', ignore], ['SIGTERM', pass('SIGTERM')], ['SIGHUP', pass('SIGHUP')]];
  for (const [sig, h] of handlers) process.on(sig, h);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve([c, s]));
    });
    if (failure) throw new RuntimeError('EEXEC', `cannot run ${spec.command[0]} in VE ${id}: ${failure.trim()}`);
    if (signal) throw new RuntimeError('EINTR', `the launcher of VE ${id}'s command was killed by ${signal}`);
    return code!;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}
