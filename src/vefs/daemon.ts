// Running the server process, and finding or starting it from a client.
import { spawn } from 'node:child_process';
import { closeSync, openSync, constants as fsc } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { native, C, type NativeError } from '../../native/index.js';
import { call, serveControl, type Request } from './control.js';
import { logPath, pidPath, serverLockPath, socketPath, startLockPath, stateDir } from './state.js';
import { VefsError } from './vefs-error.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Runs the host's server in this process until it is told to stop. */
export async function runServer(): Promise<void> {
  await mkdir(stateDir(), { recursive: true, mode: 0o700 });
  // Held until this process ends (never closed): a second server must not take over the socket of the
  // first, whose mounts it would strand. The descriptor is not inherited (O_CLOEXEC).
  const lock = openSync(serverLockPath(), fsc.O_RDWR | fsc.O_CREAT, 0o600);
  try {
    native.flockSync(lock, C.LOCK_EX | C.LOCK_NB);
  } catch (err) {
    closeSync(lock);
    if ((err as NativeError).code !== 'EAGAIN') throw err;
    throw new VefsError('EALREADY', `another VEFS server runs or is starting (state in ${stateDir()})`);
  }
  // A server is alive if it answers; a pid alone may be a zombie or a reused number.
  if (await serverRunning()) {
    const old = (await readFile(pidPath(), 'utf8').catch(() => '?')).trim();
    throw new VefsError('EALREADY', `a VEFS server already runs as pid ${old} (state in ${stateDir()})`);
  }
  await rm(socketPath(), { force: true });
  await writeFile(pidPath(), `${process.pid}\n`);
  const log = (m: string): void => console.log(`${new Date().toISOString()} ${m}`);
  // Loaded here, not at the top: every client command imports this module, and only the server needs the bindings.
  const { MountServer } = await import('./server.js');
  const server = new MountServer(log);
  // Before taking requests: a mount of a server that died is ours again before anyone asks about it.
  await server.recover();
  let stopping: Promise<void> | null = null;
  const stop = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log(`stopping (${why})`);
      await server.unmountAll();
      control.close();
      await rm(socketPath(), { force: true });
      await rm(pidPath(), { force: true });
    })();
    return stopping;
  };
  const control = await serveControl(socketPath(), async (req: Request) => {
    switch (req.op) {
      case 'mount': return server.mount(req.request);
      case 'umount': return server.unmount(req.mountpoint);
      case 'status': return server.status();
      case 'invalidate': return server.invalidate(req.paths);
      case 'open-for-writing': return server.openForWriting();
      case 'shutdown':
        setImmediate(() => void stop('shutdown request').then(() => process.exit(0)));
        return true;
    }
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => void stop(sig).then(() => process.exit(0)));
  }
  log(`VEFS server ${process.pid} listening on ${socketPath()}`);
}

/** Whether a server answers on the control socket. */
export async function serverRunning(): Promise<boolean> {
  try {
    await call(socketPath(), { op: 'status' });
    return true;
  } catch {
    return false;
  }
}

/** Starts the host's server in the background unless one answers already; true if this call started it. */
export async function ensureServer(): Promise<boolean> {
  if (await serverRunning()) return false;
  await mkdir(stateDir(), { recursive: true, mode: 0o700 });
  // Clients that find no server start one at a time; the next one finds it running.
  const lock = openSync(startLockPath(), fsc.O_RDWR | fsc.O_CREAT, 0o600);
  try {
    await native.flock(lock, C.LOCK_EX);
    return await serverRunning() ? false : await startServer();
  } finally {
    closeSync(lock);
  }
}

async function startServer(): Promise<boolean> {
  const logFile = await open(logPath(), 'a');
  const child = spawn(process.execPath, [CLI, 'server'], {
    detached: true,
    // Holding the caller's working directory would keep its filesystem busy.
    cwd: '/',
    stdio: ['ignore', logFile.fd, logFile.fd],
    env: process.env,
  });
  child.unref();
  await logFile.close();
  let exited = false;
  child.once('exit', () => (exited = true));
  for (let i = 0; i < 200 && !exited; i++) {
    if (await serverRunning()) return true;
    await sleep(50);
  }
  // A server started by hand meanwhile answers as well as ours would.
  if (await serverRunning()) return !exited;
  throw new VefsError('ESERVER', `the VEFS server did not start; see ${logPath()}`);
}
