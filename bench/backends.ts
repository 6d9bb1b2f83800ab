// The storage a VE root can sit on: one object per backend. Each mounts a VE
// root (template + private tree) at a mountpoint and takes it down again; a
// backend that is not installed says why, and is skipped with that note.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { installed, run } from './exec.js';
import { BINDINGS } from '../src/vefs/config.js';
import { call } from '../src/vefs/control.js';
import { ensureServer, serverRunning } from '../src/vefs/daemon.js';
import { readMounts } from '../src/vefs/mounts.js';
import { pidPath, socketPath } from '../src/vefs/state.js';
import type { BindingName } from '../src/vefs/types.js';
import { umount as vefsUmount } from '../src/vefs/umount.js';

/** One VE root's directories. */
export interface Root {
  template: string;
  /** What the raw backend shows: its own tree of the template (bench/template.ts, rawTree). */
  rawCopy: string;
  privateDir: string;
  workDir: string;
  mountpoint: string;
}

export interface Backend {
  id: string;
  /** raw is the limit; peers are what an operator would use instead of VEFS. */
  kind: 'limit' | 'peer' | 'vefs';
  /** How it is mounted, for the report. */
  how: string;
  /** null when it can run here; otherwise why not (the note of a skipped backend). */
  unavailable(): Promise<string | null>;
  version(): Promise<string>;
  mount(root: Root): Promise<void>;
  unmount(mountpoint: string): Promise<void>;
  /**
   * The processes that serve a mounted VE root (a FUSE server): the page cache
   * of their own reads is charged to their memory cgroup, not the reader's.
   */
  servers?(mountpoint: string): Promise<number[]>;
  /** Stops whatever the backend started for the run. */
  finish?(): Promise<void>;
}

async function expectMounted(backend: string, mountpoint: string, fstype: RegExp): Promise<void> {
  const entry = (await readMounts()).filter((m) => m.mountpoint === mountpoint).pop();
  if (!entry) throw new Error(`${backend}: mount returned but ${mountpoint} is not mounted`);
  if (!fstype.test(entry.fstype)) throw new Error(`${backend}: ${mountpoint} is mounted as ${entry.fstype}, not ${fstype}`);
}

const firstLines = (text: string, n: number): string => text.trim().split('\n').slice(0, n).join('; ');

async function debVersion(pkg: string): Promise<string> {
  try {
    return (await run('dpkg-query', ['-W', '-f', '${Version}', pkg], { timeoutMs: 10_000 })).stdout.trim();
  } catch {
    return 'not a Debian package here';
  }
}

const plainUnmount = async (mountpoint: string): Promise<void> => {
  await run('umount', [mountpoint], { timeoutMs: 120_000 });
};

/** Processes whose command line names the mountpoint: a FUSE server started for that mount alone. */
async function processesNaming(mountpoint: string): Promise<number[]> {
  const pids: number[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(mountpoint)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const missing = async (command: string, pkg: string): Promise<string | null> =>
  (await installed(command)) ? null : `\`${command}\` is not installed (Debian package ${pkg}; .ci/install installs it)`;

const raw: Backend = {
  id: 'raw',
  kind: 'limit',
  how: 'the template\'s tree on the same filesystem (hard links; real copies of files written in place), bind-mounted: no union at all',
  unavailable: async () => null,
  version: async () => `kernel ${release()}`,
  async mount(r) {
    await run('mount', ['--bind', r.rawCopy, r.mountpoint]);
    await expectMounted('raw', r.mountpoint, /./);
  },
  unmount: plainUnmount,
};

const overlayfs: Backend = {
  id: 'overlayfs',
  kind: 'peer',
  how: 'kernel overlayfs, `mount -t overlay -o lowerdir=T,upperdir=P,workdir=W` (the kernel\'s default options)',
  async unavailable() {
    if (readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n')) return null;
    await run('modprobe', ['overlay']).catch(() => undefined);
    return readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n') ? null : 'this kernel has no overlay filesystem';
  },
  version: async () => `kernel ${release()}`,
  async mount(r) {
    await run('mount', ['-t', 'overlay', 'overlay', '-o',
      `lowerdir=${r.template},upperdir=${r.privateDir},workdir=${r.workDir}`, r.mountpoint]);
    await expectMounted('overlayfs', r.mountpoint, /^overlay$/);
  },
  unmount: plainUnmount,
};

const fuseOverlayfs: Backend = {
  id: 'fuse-overlayfs',
  kind: 'peer',
  how: '`fuse-overlayfs -o lowerdir=T,upperdir=P,workdir=W` (libfuse 3, its default options)',
  unavailable: () => missing('fuse-overlayfs', 'fuse-overlayfs'),
  version: async () => `${firstLines((await run('fuse-overlayfs', ['--version'])).stdout, 3)} (deb ${await debVersion('fuse-overlayfs')})`,
  async mount(r) {
    await run('fuse-overlayfs', ['-o', `lowerdir=${r.template},upperdir=${r.privateDir},workdir=${r.workDir}`, r.mountpoint]);
    await expectMounted('fuse-overlayfs', r.mountpoint, /^fuse/);
  },
  unmount: plainUnmount,
  servers: processesNaming,
};

const unionfsFuse: Backend = {
  id: 'unionfs-fuse',
  kind: 'peer',
  how: '`unionfs -o cow,allow_other,use_ino,suid,dev,nonempty P=RW:T=RO` (libfuse 2; its own whiteout format in P/.unionfs-fuse)',
  unavailable: () => missing('unionfs', 'unionfs-fuse'),
  async version() {
    const out = await run('unionfs', ['--version']).catch((e: Error) => ({ stdout: e.message }));
    const lines = out.stdout.split('\n').filter((l) => /unionfs-fuse version|FUSE library/.test(l));
    return `${lines.join('; ')} (deb ${await debVersion('unionfs-fuse')})`;
  },
  async mount(r) {
    await run('unionfs', ['-o', 'cow,allow_other,use_ino,suid,dev,nonempty', `${r.privateDir}=RW:${r.template}=RO`, r.mountpoint]);
    await expectMounted('unionfs-fuse', r.mountpoint, /^fuse/);
  },
  unmount: plainUnmount,
  servers: processesNaming,
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

/** How each VEFS binding talks to the kernel, for the report. */
const BINDING_HOW: Record<BindingName, string> = {
  kernel: 'VEFS, kernel binding (its own FUSE protocol on /dev/fuse, passthrough of opened files)',
  'fuse-native': 'VEFS, fuse-native binding (libfuse 2.9 high-level API)',
};

/**
 * VEFS through one binding, served by the run's one server (VEFS_STATE_DIR
 * set by the harness): both bindings' mounts share it, as they would on a host.
 */
function vefsBackend(binding: BindingName): Backend {
  return {
    id: `vefs-${binding}`,
    kind: 'vefs',
    how: `${BINDING_HOW[binding]}, one server process for every mount of the run`,
    unavailable: async () => (existsSync('/dev/fuse') ? null : '/dev/fuse is missing'),
    async version() {
      const pkg = (p: string): string => (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
      const commit = await run('git', ['-C', packageRoot, 'describe', '--always', '--dirty'], { timeoutMs: 10_000 })
        .then((r) => r.stdout.trim(), () => 'no git');
      const vefs = `vefs ${pkg(`${packageRoot}/package.json`)} (${commit})`;
      if (binding === 'kernel') return `${vefs}, kernel ${release()}`;
      return `${vefs}, fuse-native ${pkg(`${packageRoot}/node_modules/fuse-native/package.json`)}, libfuse ${await debVersion('libfuse2')}`;
    },
    async mount(r) {
      await ensureServer();
      await call(socketPath(), {
        op: 'mount',
        request: { templates: [r.template], privateDir: r.privateDir, workDir: r.workDir, mountpoint: r.mountpoint, binding },
      });
      await expectMounted(`vefs-${binding}`, r.mountpoint, /^fuse\.vefs$/);
    },
    async unmount(mountpoint) {
      await vefsUmount(mountpoint);
    },
    servers: async () => (existsSync(pidPath()) ? [Number(readFileSync(pidPath(), 'utf8').trim())] : []),
    finish: stopServer,
  };
}

/** Stops the run's VEFS server; both VEFS backends call it, the second finds it gone. */
async function stopServer(): Promise<void> {
  if (!existsSync(pidPath())) return;
  const pid = Number(readFileSync(pidPath(), 'utf8').trim());
  if (await serverRunning()) await call(socketPath(), { op: 'shutdown' }).catch(() => undefined);
  // The run's directory goes next: the server must be gone, not stopping.
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
  if (alive(pid)) {
    process.kill(pid, 'SIGKILL');
    throw new Error(`the VEFS server ${pid} of the run did not stop on request; killed it`);
  }
}

/** Every backend, in report order: the limit, the peers, then VEFS (one entry per binding). */
export const BACKENDS: Backend[] = [raw, overlayfs, fuseOverlayfs, unionfsFuse, ...BINDINGS.map(vefsBackend)];
