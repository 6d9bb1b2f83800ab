// Runtime: how many VEs a host holds. Each sample creates and starts N
// busybox VEs with the runtime (src/runtime: namespaces, cgroups, the
// launcher's PID 1) on the backend's roots, one after another as an operator's
// loop would, then stops and destroys them. VEFS roots are the runtime's own
// (one server for every mount); the other backends' roots are mounted by the
// bench's backend code in the runtime's place, so the same VEs run on them.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BACKENDS } from '../backends.js';
import { usage } from '../../src/runtime/cgroup.js';
import { createTemplate } from '../../src/runtime/templates.js';
import { createVe, destroyVe, Runtime, startVe } from '../../src/runtime/ve.js';
import type { RootStorage } from '../../src/runtime/storage.js';
import { call, type Status } from '../../src/vefs/control.js';
import { ensureServer } from '../../src/vefs/daemon.js';
import { socketPath } from '../../src/vefs/state.js';
import type { Context, Group, Sizes } from '../types.js';

const count = (sizes: Sizes): number => (sizes.quick ? 3 : 100);
const ids = (n: number): number[] => Array.from({ length: n }, (_, k) => 101 + k);

/** Both VEFS backends (vefs-kernel, vefs-fuse-native) are served by the run's one VEFS server. */
const servedByVefs = (backend: string): boolean => backend.startsWith('vefs-');

/** The backend's roots for the runtime: the bench backend's mount and unmount (VEFS's with its binding). */
function storageFor(ctx: Context): RootStorage {
  const b = BACKENDS.find((x) => x.id === ctx.backend)!;
  return {
    async mount(r) {
      // VEFS makes its work directory itself; the others want it made.
      mkdirSync(r.workDir, { recursive: true });
      await b.mount({ ...r, rawCopy: ctx.backing });
    },
    unmount: (mp) => b.unmount(mp),
    served: async () => true,
  };
}

/** A runtime of its own for one sample, with a busybox template. */
async function newRuntime(ctx: Context): Promise<Runtime> {
  const root = join(dirname(ctx.template), `runtime-${ctx.backend}`);
  rmSync(root, { recursive: true, force: true });
  const rt = new Runtime(root, storageFor(ctx));
  await createTemplate(rt.layout, rt.state, 'busybox', { kind: 'busybox' });
  return rt;
}

/** Creates and starts VEs 101.. one after another; resolves each one's milliseconds. */
async function startAll(rt: Runtime, n: number): Promise<number[]> {
  const ms: number[] = [];
  for (const id of ids(n)) {
    const t0 = process.hrtime.bigint();
    await createVe(rt, String(id), 'busybox', { memory: 64 * 2 ** 20, pids: 64 });
    await startVe(rt, String(id));
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ms;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

async function teardown(rt: Runtime): Promise<void> {
  for (const rec of rt.state.ves()) await destroyVe(rt, String(rec.id), true);
  const root = rt.layout.root;
  rt.close();
  rmSync(root, { recursive: true, force: true });
}

const kib = (text: string, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;

/** Resident bytes of what serves the backend's mounts: the VEFS server, or every FUSE daemon of the backend, by name. */
async function storageRss(backend: string): Promise<number> {
  if (servedByVefs(backend)) return (await call<Status>(socketPath(), { op: 'status' })).rssBytes;
  const name = { 'fuse-overlayfs': 'fuse-overlayfs', 'unionfs-fuse': 'unionfs' }[backend];
  if (!name) return 0;
  let total = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (/^Name:\s+(.*)$/m.exec(status)?.[1] === name) total += kib(status, 'VmRSS');
    } catch { /* exited meanwhile */ }
  }
  return total;
}

/** Host memory in use: what the kernel could not hand out without reclaiming (MemTotal - MemAvailable). */
function hostUsed(): number {
  const m = readFileSync('/proc/meminfo', 'utf8');
  return kib(m, 'MemTotal') - kib(m, 'MemAvailable');
}

let live: Runtime | null = null;

export const runtime: Group = {
  id: 'runtime',
  title: 'Runtime: VE density',
  method: 'A fresh runtime state directory per sample with a busybox template; N VEs (64 MiB and 64 pids limits each) are created '
    + 'and started one after another with the runtime (namespaces, pivot_root, cgroups, the launcher\'s PID 1), then stopped and destroyed. '
    + 'VEFS roots are the runtime\'s own (one server for all mounts); other backends\' roots are mounted by their bench code. '
    + 'Memory per VE: the VEs\' own cgroups (memory.usage_in_bytes on v1, memory.current on v2: their processes\' pages and the kernel '
    + 'memory they were charged, namespaces included) plus the growth of the resident memory of what serves the mounts (the VEFS server, '
    + 'or each FUSE daemon; a shrink, when the VEFS server\'s garbage collector returns memory, counts as none), divided by N. '
    + 'The JSON also has the host-wide growth of MemTotal - MemAvailable, which other work on the host disturbs.',
  workloads(sizes) {
    const n = count(sizes);
    return [{
      id: 'start',
      title: `create and start ${n} busybox VEs, one after another: milliseconds per VE`,
      unit: 'ms/VE', better: 'lower', mounts: 0,
      async prepare(ctx) {
        live = await newRuntime(ctx);
      },
      async measure(ctx) {
        const rt = live!;
        try {
          const ms = await startAll(rt, n);
          // Whether starting gets slower as VEs accumulate: the first and the last tenth.
          const tenth = Math.max(1, Math.floor(n / 10));
          ctx.note('msFirstTenth', mean(ms.slice(0, tenth)));
          ctx.note('msLastTenth', mean(ms.slice(-tenth)));
          return mean(ms);
        } finally {
          live = null;
          await teardown(rt);
        }
      },
    }, {
      id: 'memory',
      title: `host memory per running VE with ${n} running (storage server included)`,
      unit: 'MiB/VE', better: 'lower', mounts: 0,
      async prepare(ctx) {
        live = await newRuntime(ctx);
      },
      async measure(ctx) {
        const rt = live!;
        try {
          // The server's own size before these VEs is a cost per host, not per VE.
          if (servedByVefs(ctx.backend)) await ensureServer();
          const rssBefore = await storageRss(ctx.backend);
          ctx.note('storageRssBytesBefore', rssBefore);
          const hostBefore = hostUsed();
          await startAll(rt, n);
          const cgroups = rt.state.ves().reduce((sum, v) => sum + usage(v.cgroups!).memoryBytes, 0);
          const grown = (await storageRss(ctx.backend)) - rssBefore;
          // A Node server's resident size also shrinks when its garbage collector returns memory: that is no VE's gain.
          const storage = Math.max(0, grown);
          ctx.note('cgroupBytesPerVe', cgroups / n);
          ctx.note('storageRssGrowthBytesPerVe', grown / n);
          ctx.note('hostUsedBytesPerVe', (hostUsed() - hostBefore) / n);
          return (cgroups + storage) / n / 2 ** 20;
        } finally {
          live = null;
          await teardown(rt);
        }
      },
    }];
  },
};
