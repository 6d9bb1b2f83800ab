// The descriptor holder (native/holder/fdholder.c): a small process outside
// the server that keeps a copy of every kernel-binding mount's FUSE device.
// If the server dies, the kernel keeps those connections (their VEs stall
// instead of failing), and the next server takes the devices back
// (src/vefs/server.ts, recover).
import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { holderSocketPath } from './state.js';
import { VefsError } from './vefs-error.js';

const HOLDER = fileURLToPath(new URL('../../../native/build/Release/vefs-fdholder', import.meta.url));

/** A mountpoint as a holder name: no space, no newline. */
const nameOf = (mountpoint: string): string => encodeURIComponent(mountpoint);

function ask(command: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(holderSocketPath());
    let data = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${command}\n`));
    sock.on('data', (c) => (data += c));
    sock.on('error', reject);
    sock.on('end', () => resolve(data.split('\n').filter(Boolean)));
  });
}

async function started(): Promise<void> {
  if (await ask('list').then(() => true, () => false)) return;
  const child = spawn(HOLDER, [holderSocketPath()], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], cwd: '/' });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new VefsError('EIO', `the descriptor holder exited with ${code}`)));
    child.stdout.once('data', () => resolve());
  });
  child.stdout.destroy();
  child.removeAllListeners();
  child.unref();
}

/** Has the holder keep a copy of this process's descriptor fd for the mount. */
export async function hold(mountpoint: string, fd: number): Promise<void> {
  await started();
  const [reply] = await ask(`hold ${process.pid} ${fd} ${nameOf(mountpoint)}`);
  if (!reply?.startsWith('ok')) throw new VefsError('EIO', `the descriptor holder refused ${mountpoint}: ${reply}`);
}

/** The mount is gone: the holder lets go of its device (and exits when it holds nothing). */
export async function drop(mountpoint: string): Promise<void> {
  await ask(`drop ${nameOf(mountpoint)}`).catch(() => undefined);
}

/** What the holder keeps: its pid and, per mountpoint, its descriptor number there. Empty when none runs. */
export async function held(): Promise<{ pid: number; devices: Map<string, number> }> {
  const lines = await ask('list').catch(() => [] as string[]);
  const devices = new Map<string, number>();
  let pid = 0;
  for (const line of lines) {
    const [a, b] = line.split(' ');
    if (a === 'pid') pid = Number(b);
    else if (a !== 'end') devices.set(decodeURIComponent(a), Number(b));
  }
  return { pid, devices };
}
