// Resource limits through cgroups, with one backend per cgroup version,
// chosen by what the host has (VEFS_CGROUP=v1|v2 forces one):
//  - v2 (the unified hierarchy, most current hosts): one directory per VE
//    under <hierarchy root>/vefs, with memory, pids and cpu enabled down to it.
//    v2 forbids processes in a cgroup that hands controllers to its children,
//    so the VEs' parent cannot be the caller's own cgroup: it is the root's
//    child 'vefs'.
//  - v1 (one hierarchy per controller, as on this project's machines): one
//    directory per VE in each of memory, pids, cpu and cpuacct, below the
//    cgroup the calling vefs runs in, so that a limit the host put on the
//    operator's session (a slice, a sandbox) still contains the VEs.
// A VE's directories are named <tag>.<ID>, the tag a digest of the state
// directory, so that two state directories on one host never share one.
// Which directories a VE has is recorded in the state (CgroupSet): stop,
// status and exec use the record, never a recomputation.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuntimeError } from './errors.js';
import type { Limits } from './state.js';

export type CgroupVersion = 'v1' | 'v2';

/** A VE's cgroup directories: v1 one per controller, v2 one ('unified'). */
export interface CgroupSet {
  version: CgroupVersion;
  dirs: Record<string, string>;
}

export interface Usage {
  memoryBytes: number;
  processes: number;
  /** CPU time used since the cgroup was made, microseconds. */
  cpuUsec: number;
}

/** A cgroup v2 period, and the one v1's quota is written against. */
const CPU_PERIOD_US = 100_000;
const V1_CONTROLLERS = ['memory', 'pids', 'cpu', 'cpuacct'] as const;
const V2_CONTROLLERS = ['memory', 'pids', 'cpu'];

interface Mount { point: string; type: string; options: string[] }

function cgroupMounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [pre, post] = line.split(' - ');
    const f = pre!.split(' ');
    const [type, , superOpts] = post!.split(' ');
    return { point: f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), type: type!, options: (superOpts ?? '').split(',') };
  }).filter((m) => m.type === 'cgroup' || m.type === 'cgroup2');
}

/** The caller's cgroup path in each hierarchy, from /proc/self/cgroup ('' for v2's). */
function ownCgroups(): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n').filter(Boolean)) {
    const [, controllers, path] = line.split(/:(.*?):/);
    for (const c of controllers!.split(',')) own.set(c.replace(/^name=/, ''), path!);
  }
  return own;
}

function v2Root(): string | null {
  for (const m of cgroupMounts().filter((x) => x.type === 'cgroup2')) {
    const controllers = readFileSync(join(m.point, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    if (V2_CONTROLLERS.every((c) => controllers.includes(c))) return m.point;
  }
  return null;
}

function v1Points(): Map<string, string> | null {
  const points = new Map<string, string>();
  for (const m of cgroupMounts().filter((x) => x.type === 'cgroup')) {
    for (const c of V1_CONTROLLERS) if (m.options.includes(c)) points.set(c, m.point);
  }
  return V1_CONTROLLERS.every((c) => points.has(c)) ? points : null;
}

/** The backend this host supports (v2 first: v1 is legacy), or the one VEFS_CGROUP names. */
export function cgroupVersion(): CgroupVersion {
  const wanted = process.env.VEFS_CGROUP;
  if (wanted !== undefined && wanted !== 'v1' && wanted !== 'v2') {
    throw new RuntimeError('EINVAL', `VEFS_CGROUP is '${wanted}': it must be v1 or v2`);
  }
  const has = { v2: v2Root() !== null, v1: v1Points() !== null };
  if (wanted) {
    if (!has[wanted]) throw new RuntimeError('ENOTSUP', `VEFS_CGROUP=${wanted}, but this host has no cgroup ${wanted} hierarchy with ${wanted === 'v2' ? V2_CONTROLLERS.join(', ') : V1_CONTROLLERS.join(', ')}`);
    return wanted;
  }
  if (has.v2) return 'v2';
  if (has.v1) return 'v1';
  throw new RuntimeError('ENOTSUP', 'this host has neither a cgroup v2 hierarchy with memory, pids and cpu nor cgroup v1 memory, pids, cpu and cpuacct hierarchies');
}

export function cgroupName(stateRoot: string, id: number): string {
  return `${createHash('sha256').update(stateRoot).digest('hex').slice(0, 8)}.${id}`;
}

/** Where a new VE's cgroups go; nothing is created. */
export function planCgroups(version: CgroupVersion, name: string): CgroupSet {
  if (version === 'v2') return { version, dirs: { unified: join(v2Root()!, 'vefs', name) } };
  const own = ownCgroups();
  const points = v1Points()!;
  return {
    version,
    dirs: Object.fromEntries(V1_CONTROLLERS.map((c) => [c, join(points.get(c)!, own.get(c) ?? '/', 'vefs', name)])),
  };
}

const read = (dir: string, file: string): string => readFileSync(join(dir, file), 'utf8').trim();
const write = (dir: string, file: string, value: string | number): void => writeFileSync(join(dir, file), `${value}\n`);

export function createCgroups(set: CgroupSet): void {
  if (set.version === 'v2') {
    const dir = set.dirs.unified!;
    const parent = join(dir, '..');
    const root = join(parent, '..');
    const enable = V2_CONTROLLERS.map((c) => `+${c}`).join(' ');
    write(root, 'cgroup.subtree_control', enable);
    mkdirSync(parent, { recursive: true });
    write(parent, 'cgroup.subtree_control', enable);
  }
  for (const dir of Object.values(set.dirs)) mkdirSync(dir, { recursive: true });
}

/** Writes the limits; null lifts one. Applies to running processes at once. */
export function applyLimits(set: CgroupSet, limits: Limits): void {
  if (set.version === 'v2') {
    const dir = set.dirs.unified!;
    write(dir, 'memory.max', limits.memory ?? 'max');
    // Without swap off, a memory limit only moves the VE's pages to swap.
    if (existsSync(join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', limits.memory === null ? 'max' : 0);
    write(dir, 'pids.max', limits.pids ?? 'max');
    write(dir, 'cpu.max', `${limits.cpus === null ? 'max' : Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
    return;
  }
  const mem = set.dirs.memory!;
  const value = limits.memory ?? -1;
  const memsw = existsSync(join(mem, 'memory.memsw.limit_in_bytes'));
  // memsw (memory + swap) may never be below the memory limit: raise it first, lower it last.
  const current = Number(read(mem, 'memory.limit_in_bytes'));
  const raising = value === -1 || value > current;
  if (memsw && raising) write(mem, 'memory.memsw.limit_in_bytes', value);
  write(mem, 'memory.limit_in_bytes', value);
  if (memsw && !raising) write(mem, 'memory.memsw.limit_in_bytes', value);
  write(set.dirs.pids!, 'pids.max', limits.pids ?? 'max');
  write(set.dirs.cpu!, 'cpu.cfs_period_us', CPU_PERIOD_US);
  write(set.dirs.cpu!, 'cpu.cfs_quota_us', limits.cpus === null ? -1 : Math.round(limits.cpus * CPU_PERIOD_US));
}

const exists = (set: CgroupSet): boolean => Object.values(set.dirs).some((d) => existsSync(d));

/** Pids in the VE's cgroups (the pids controller's on v1: every VE process is in all of them). */
export function cgroupProcs(set: CgroupSet): number[] {
  const dir = set.version === 'v2' ? set.dirs.unified! : set.dirs.pids!;
  if (!existsSync(dir)) return [];
  return read(dir, 'cgroup.procs').split('\n').filter(Boolean).map(Number);
}

export function usage(set: CgroupSet): Usage {
  if (set.version === 'v2') {
    const dir = set.dirs.unified!;
    const cpu = /^usage_usec (\d+)$/m.exec(read(dir, 'cpu.stat'));
    return { memoryBytes: Number(read(dir, 'memory.current')), processes: Number(read(dir, 'pids.current')), cpuUsec: Number(cpu?.[1] ?? 0) };
  }
  return {
    memoryBytes: Number(read(set.dirs.memory!, 'memory.usage_in_bytes')),
    processes: Number(read(set.dirs.pids!, 'pids.current')),
    cpuUsec: Math.round(Number(read(set.dirs.cpuacct!, 'cpuacct.usage')) / 1000),
  };
}

/** How often the limits stopped something: OOM kills and refused forks. */
export function limitEvents(set: CgroupSet): { oomKills: number; forksRefused: number } {
  const field = (text: string, name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  if (set.version === 'v2') {
    const dir = set.dirs.unified!;
    return { oomKills: field(read(dir, 'memory.events'), 'oom_kill'), forksRefused: field(read(dir, 'pids.events'), 'max') };
  }
  return {
    oomKills: field(read(set.dirs.memory!, 'memory.oom_control'), 'oom_kill'),
    forksRefused: field(read(set.dirs.pids!, 'pids.events'), 'max'),
  };
}

/**
 * SIGKILL to every process of the VE until none is left, then the
 * directories go. A process forking while it is killed is caught by the next
 * round; v2's cgroup.kill does it in one step where the kernel has it.
 */
export async function destroyCgroups(set: CgroupSet, timeoutMs = 10_000): Promise<void> {
  if (!exists(set)) return;
  const deadline = Date.now() + timeoutMs;
  const killFile = set.version === 'v2' ? join(set.dirs.unified!, 'cgroup.kill') : null;
  for (;;) {
    const procs = cgroupProcs(set);
    if (procs.length === 0) break;
    if (killFile && existsSync(killFile)) write(set.dirs.unified!, 'cgroup.kill', 1);
    else for (const pid of procs) try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
    if (Date.now() > deadline) {
      throw new RuntimeError('EBUSY', `processes ${procs.join(', ')} survived SIGKILL in ${Object.values(set.dirs)[0]} for ${timeoutMs / 1000} s (stuck in the kernel, e.g. on a dead mount)`);
    }
    await sleep(20);
  }
  for (const dir of Object.values(set.dirs)) {
    // A cgroup whose last process just died may stay busy for a moment.
    while (existsSync(dir)) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) {
          throw new RuntimeError('EBUSY', `cannot remove cgroup ${dir}: ${(err as Error).message}`);
        }
        await sleep(20);
      }
    }
  }
}
