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

// One holder command at a time: mounts made at once must share one holder (a
// second would take over the socket and leave the first, unreachable, holding
// devices for ever), and a holder that a drop emptied must be gone before the
// next mount looks for one.
let queue: Promise<unknown> = Promise.resolve();

function serial<T>(command: () => Promise<T>): Promise<T> {
  const done = queue.then(command);
  queue = done.catch(() => undefined);
  return done;
}

async function started(): Promise<void> {
  if (!(await ask('list').then(() => true, () => false))) await spawnHolder();
}

async function spawnHolder(): Promise<void> {
  const child = spawn(HOLDER, [holderSocketPath()], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
  // What it says before it is ready is why it did not start; after that it says nothing (and ignores SIGPIPE).
  let said = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c: string) => (said += c));
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => reject(new VefsError('EIO', `the descriptor holder exited with ${code}${said.trim() ? `: ${said.trim()}` : ''}`)));
    child.stdout.once('data', () => resolve());
  });
  child.stdout.destroy();
  child.stderr.destroy();
  child.removeAllListeners();
  child.unref();
}

/** Has the holder keep a copy of this process's descriptor fd for the mount. */
export function hold(mountpoint: string, fd: number): Promise<void> {
  return serial(async () => {
    await started();
    const [reply] = await ask(`hold ${process.pid} ${fd} ${nameOf(mountpoint)}`);
    if (!reply?.startsWith('ok')) throw new VefsError('EIO', `the descriptor holder refused ${mountpoint}: ${reply}`);
  });
}

/** The mount is gone: the holder lets go of its device (and exits when it holds nothing). */
export function drop(mountpoint: string): Promise<void> {
  return serial(() => ask(`drop ${nameOf(mountpoint)}`).then(() => undefined, () => undefined));
}

/** What the holder keeps: its pid and, per mountpoint, its descriptor number there. Empty when none runs. */
export async function held(): Promise<{ pid: number; devices: Map<string, number> }> {
  const lines = await serial(() => ask('list').catch(() => [] as string[]));
  const devices = new Map<string, number>();
  let pid = 0;
  for (const line of lines) {
    const [a, b] = line.split(' ');
    if (a === 'pid') pid = Number(b);
    else if (a !== 'end') devices.set(decodeURIComponent(a), Number(b));
  }
  return { pid, devices };
}
