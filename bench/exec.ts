// Child processes of a run. Every command that touches a mount runs as a
// child, so this process never blocks on a filesystem it measures; the set of
// live children lets an interrupt stop them before the mounts come down.
import { spawn, type ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();

export interface RunResult {
  stdout: string;
  stderr: string;
  seconds: number;
}

export class CommandError extends Error {}

/** Runs file with args; resolves with its output and wall time, rejects with its stderr if it fails. */
export function run(file: string, args: string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}):
  Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const command = [file, ...args].join(' ');
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new CommandError(`${command}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code === 0) return resolve({ stdout, stderr, seconds });
      const why = timedOut ? `timed out after ${timeoutMs / 1000} s` : signal ? `killed by ${signal}` : `exit ${code}`;
      const tail = stderr.trim().split('\n').slice(-5).join('\n') || stdout.trim().split('\n').slice(-5).join('\n');
      reject(new CommandError(`${command}: ${why}${tail ? `\n${tail}` : ''}`));
    });
  });
}

/** Whether a command is on PATH. */
export async function installed(command: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v "$1"`, 'sh', command], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Stops every child still running (an interrupt: its mounts are about to be unmounted). */
export function killChildren(): void {
  for (const child of live) child.kill('SIGTERM');
}
