// Server memory per mount: for each binding, a fresh VEFS server carries N VE
// roots of the busybox template; after every root has been walked (ls -lR)
// and written to, the server's RSS, threads and open descriptors are read at
// each level of N. The figure per mount is the RSS beyond the idle server's,
// divided by N. Prints a markdown table.
//   node dist/bench/mount-memory.js [kernel=20,100,200,500] [fuse-native=20,100,200]
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBusyboxTemplate } from '../src/runtime/template.js';
import { BINDINGS } from '../src/vefs/config.js';
import { call } from '../src/vefs/control.js';
import { ensureServer } from '../src/vefs/daemon.js';
import { pidPath, socketPath } from '../src/vefs/state.js';
import type { BindingName } from '../src/vefs/types.js';
import { umount } from '../src/vefs/umount.js';

const run = promisify(execFile);

// fuse-native runs a libfuse thread per mount: a few hundred is what a host would give it.
const DEFAULT_LEVELS: Record<BindingName, number[]> = { kernel: [20, 100, 200, 500], 'fuse-native': [20, 100, 200] };

interface Usage {
  rssMiB: number;
  threads: number;
  fds: number;
  /** The server's RLIMIT_NOFILE: each mount holds descriptors (its /dev/fuse, its layers' directories, passthrough files). */
  fdLimit: string;
}

function usage(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  const fdLimit = /^Max open files\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1] ?? 'unknown';
  return { rssMiB: field('VmRSS') / 1024, threads: field('Threads'), fds: readdirSync(`/proc/${pid}/fd`).length, fdLimit };
}

/** Levels per binding from `binding=a,b,c` arguments; a binding not named keeps its default, `binding=` drops it. */
function levels(args: string[]): [BindingName, number[]][] {
  const chosen = new Map<BindingName, number[]>(BINDINGS.map((b) => [b, DEFAULT_LEVELS[b]]));
  for (const a of args) {
    const [b, list] = a.split('=');
    if (!(BINDINGS as string[]).includes(b) || list === undefined) throw new Error(`usage: [${BINDINGS.join('|')}]=N,N,... (not ${a})`);
    chosen.set(b as BindingName, list.split(',').filter(Boolean).map(Number));
  }
  return [...chosen].filter(([, ns]) => ns.length > 0);
}

async function measure(binding: BindingName, counts: number[], base: string, template: string): Promise<string[]> {
  process.env.VEFS_STATE_DIR = join(base, `state-${binding}`);
  await ensureServer();
  const pid = Number(readFileSync(pidPath(), 'utf8').trim());
  const mounted: string[] = [];
  const rows: string[] = [];
  const row = (n: number, u: Usage, idle: Usage): string => `| ${binding} | ${n} | ${u.rssMiB.toFixed(1)} | `
    + `${n === 0 ? '' : ((u.rssMiB - idle.rssMiB) / n).toFixed(2)} | ${u.threads} | ${u.fds} of ${u.fdLimit} |`;
  try {
    const idle = usage(pid);
    rows.push(row(0, idle, idle));
    for (const target of counts) {
      while (mounted.length < target) {
        const i = mounted.length;
        const priv = join(base, `${binding}/private/${i}`);
        const mnt = join(base, `${binding}/root/${i}`);
        await mkdir(priv, { recursive: true });
        await mkdir(mnt, { recursive: true });
        await call(socketPath(), { op: 'mount', request: { templates: [template], privateDir: priv, mountpoint: mnt, binding } });
        mounted.push(mnt);
        await run('ls', ['-lR', mnt], { maxBuffer: 64 * 2 ** 20 });
        await writeFile(join(mnt, 'etc/hostname'), `ve${i}\n`);
      }
      rows.push(row(target, usage(pid), idle));
    }
  } finally {
    for (const m of mounted.reverse()) await umount(m).catch((e: Error) => console.error(`umount ${m}: ${e.message}`));
    await call(socketPath(), { op: 'shutdown' }).catch(() => undefined);
  }
  return rows;
}

async function main(): Promise<void> {
  const plan = levels(process.argv.slice(2));
  const base = await mkdtemp('/var/tmp/vefs-bench-mem-');
  const rows: string[] = [];
  try {
    const template = join(base, 'template');
    await buildBusyboxTemplate(template);
    for (const [binding, counts] of plan) rows.push(...await measure(binding, counts, base, template));
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  console.log(`One VEFS server per binding, ${new Date().toISOString().slice(0, 16)}Z, kernel ${release()}; `
    + 'each root walked with ls -lR and /etc/hostname written before the reading.\n');
  console.log('| binding | mounts | server RSS (MiB) | MiB per mount beyond idle | threads | open fds of the limit |\n|---|---:|---:|---:|---:|---:|');
  console.log(rows.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
