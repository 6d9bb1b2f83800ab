// The VE lifecycle: create, set, start, exec, stop, restart, status, mount,
// umount, destroy. Every command on a VE holds its lock (lock.ts) while it
// acts; exec holds it shared, only to check the VE, then runs its command
// unlocked.
//
// Start order, and why a crash anywhere leaves nothing the next command
// cannot clean: the root is mounted; the cgroups are recorded, then made;
// PID 1 is launched into them and recorded with its start time. A VE whose
// recorded PID 1 is gone is stopped, whatever else is left: the next start,
// stop or destroy kills what is in its recorded cgroups, removes them and
// unmounts its root (cleanup()).
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  applyLimits, cgroupName, cgroupVersion, createCgroups, destroyCgroups, limitEvents, planCgroups, usage, type CgroupVersion,
} from './cgroup.js';
import { RuntimeError } from './errors.js';
import { diskUsed, removeTree } from './fsutil.js';
import { parseHostname, parseName, parseVeId } from './ids.js';
import { launchExec, launchInit } from './launch.js';
import { connect, type NetConfig } from './net.js';
import { Layout } from './layout.js';
import { takeLock, type Release } from './lock.js';
import { alive, startTime } from './proc.js';
import { State, type Limits, type VeConfig, type VeRecord } from './state.js';
import { isMounted, vefsStorage, type RootStorage } from './storage.js';
import { templateLock } from './templates.js';

/** The runtime of one state directory: its layout and its database. */
export class Runtime {
  readonly layout: Layout;
  readonly state: State;

  constructor(root?: string, readonly storage: RootStorage = vefsStorage) {
    this.layout = new Layout(root);
    this.state = new State(this.layout.db);
  }

  close(): void {
    this.state.close();
  }
}

/** What create and set take; set changes only what is given. */
export interface VeOptions extends Partial<Limits>, Partial<NetConfig> {
  name?: string | null;
  hostname?: string;
}

export type VeState = 'running' | 'mounted' | 'stopped';

export interface VeStatus {
  id: number;
  name: string | null;
  template: string;
  hostname: string;
  state: VeState;
  /** Host pid of PID 1. */
  pid: number | null;
  limits: Limits;
  net: NetConfig;
  cgroup: CgroupVersion | null;
  processes: number;
  memoryBytes: number;
  cpuSeconds: number;
  /** Since start: processes the memory limit killed, forks the pids limit refused. */
  oomKills: number;
  forksRefused: number;
  /** Disk used by the private tree (what this VE adds to its template). */
  diskBytes: number;
  /** 'lost': the root is mounted (or the VE runs) but no VEFS server serves it. */
  storage: 'served' | 'lost' | 'unmounted';
  root: string;
  log: string;
}

/** An ID or a VE name. */
export function findVe(rt: Runtime, ref: string): VeRecord {
  const rec = /^\d+$/.test(ref) ? rt.state.ve(parseVeId(ref)) : rt.state.veByName(ref);
  if (!rec) throw new RuntimeError('ENOENT', `no VE ${ref} in ${rt.layout.root} (vefs ve list shows them)`);
  return rec;
}

const lockVe = (rt: Runtime, id: number, shared = false): Release => takeLock(rt.layout.lock(`ve.${id}`), `VE ${id}`, shared);

/** Runs fn on the VE under its lock: exclusive for a change, shared for exec's check (many may run at once). */
async function locked<T>(rt: Runtime, ref: string, fn: (rec: VeRecord) => Promise<T>, shared = false): Promise<T> {
  const id = findVe(rt, ref).id;
  const release = lockVe(rt, id, shared);
  try {
    // Read again under the lock: the holder before us may have changed or destroyed it.
    return await fn(findVe(rt, String(id)));
  } finally {
    release();
  }
}

const running = (rec: VeRecord): boolean => alive(rec.pid, rec.pidStart);

function checkOptions(rt: Runtime, id: number, opts: VeOptions, net: NetConfig): void {
  if (opts.name !== undefined && opts.name !== null) {
    parseName(opts.name, 'VE name');
    const other = rt.state.veByName(opts.name);
    if (other && other.id !== id) throw new RuntimeError('EEXIST', `VE ${other.id} is already named ${opts.name}`);
  }
  if (opts.hostname !== undefined) parseHostname(opts.hostname);
  if (net.net === 'veth' && net.ip === null) throw new RuntimeError('EINVAL', '--net veth needs --ip ADDR/PREFIX');
  if (net.net === 'none' && net.ip !== null) throw new RuntimeError('EINVAL', '--ip needs --net veth');
  const same = net.ip === null ? undefined : rt.state.ves().find((v) => v.id !== id && v.ip?.split('/')[0] === net.ip!.split('/')[0]);
  if (same) throw new RuntimeError('EEXIST', `VE ${same.id} has the address ${same.ip} already`);
}

export async function createVe(rt: Runtime, idText: string, template: string, opts: VeOptions): Promise<VeRecord> {
  const id = parseVeId(idText);
  if (!rt.state.template(template)) throw new RuntimeError('ENOENT', `no template ${template} (vefs template list shows them)`);
  const net: NetConfig = { net: opts.net ?? (opts.ip ? 'veth' : 'none'), ip: opts.ip ?? null };
  checkOptions(rt, id, opts, net);
  const releaseTemplate = takeLock(templateLock(rt.layout, template), `template ${template}`, true);
  const release = lockVe(rt, id);
  try {
    if (rt.state.ve(id)) throw new RuntimeError('EEXIST', `VE ${id} exists already`);
    const { layout } = rt;
    // Left by a create that crashed before recording the VE: no VE owns them.
    for (const d of [layout.privateDir(id), layout.workDir(id)]) await removeTree(d);
    try {
      await mkdir(layout.privateDir(id), { recursive: true, mode: 0o755 });
      await mkdir(layout.mountpoint(id), { recursive: true, mode: 0o755 });
      const config: VeConfig = {
        id, template, name: opts.name ?? null, hostname: opts.hostname ?? opts.name ?? `ve${id}`,
        memory: opts.memory ?? null, pids: opts.pids ?? null, cpus: opts.cpus ?? null, ...net,
      };
      rt.state.addVe(config, new Date().toISOString());
    } catch (err) {
      for (const d of [layout.privateDir(id), layout.workDir(id), layout.mountpoint(id)]) await removeTree(d);
      throw err;
    }
    return rt.state.ve(id)!;
  } finally {
    release();
    releaseTemplate();
  }
}

/** Saves new settings; limits apply to a running VE at once, a hostname or network at its next start. */
export async function setVe(rt: Runtime, ref: string, opts: VeOptions): Promise<{ rec: VeRecord; appliedLive: boolean }> {
  return locked(rt, ref, async (rec) => {
    const netMode = opts.net ?? rec.net;
    const net: NetConfig = { net: netMode, ip: netMode === 'none' ? opts.ip ?? null : opts.ip ?? rec.ip };
    checkOptions(rt, rec.id, opts, net);
    const next: VeConfig = {
      ...net,
      id: rec.id, template: rec.template,
      name: opts.name === undefined ? rec.name : opts.name,
      hostname: opts.hostname ?? rec.hostname,
      memory: opts.memory === undefined ? rec.memory : opts.memory,
      pids: opts.pids === undefined ? rec.pids : opts.pids,
      cpus: opts.cpus === undefined ? rec.cpus : opts.cpus,
    };
    const live = running(rec) && rec.cgroups !== null;
    if (live) {
      try {
        applyLimits(rec.cgroups!, next);
      } catch (err) {
        // Half of the new limits may be written: put the saved ones back, so that a refusal changes nothing.
        applyLimits(rec.cgroups!, rec);
        throw new RuntimeError('EINVAL', `the kernel refused VE ${rec.id}'s new limits (${(err as Error).message}); nothing changed`);
      }
    }
    rt.state.updateConfig(next);
    return { rec: rt.state.ve(rec.id)!, appliedLive: live };
  });
}

function mountRoot(rt: Runtime, rec: VeRecord): Promise<void> {
  const { layout } = rt;
  return rt.storage.mount({
    template: layout.template(rec.template), privateDir: layout.privateDir(rec.id),
    workDir: layout.workDir(rec.id), mountpoint: layout.mountpoint(rec.id),
  });
}

/** Removes whatever a stopped VE left: processes in its cgroups, the cgroups, its root's mount. */
async function cleanup(rt: Runtime, rec: VeRecord): Promise<void> {
  if (rec.cgroups) await destroyCgroups(rec.cgroups);
  if (await isMounted(rt.layout.mountpoint(rec.id))) await rt.storage.unmount(rt.layout.mountpoint(rec.id));
  rt.state.setStopped(rec.id);
}

async function startLocked(rt: Runtime, rec: VeRecord): Promise<number> {
  if (running(rec)) throw new RuntimeError('EALREADY', `VE ${rec.id} is running already (PID 1 is host pid ${rec.pid})`);
  if (!rt.state.template(rec.template)) throw new RuntimeError('ENOENT', `VE ${rec.id}'s template ${rec.template} is gone`);
  const version = cgroupVersion();
  await cleanup(rt, rec);
  await mountRoot(rt, rec);
  try {
    const cgroups = planCgroups(version, cgroupName(rt.layout.root, rec.id));
    rt.state.setCgroups(rec.id, cgroups);
    createCgroups(cgroups);
    applyLimits(cgroups, rec);
    const log = rt.layout.log(rec.id);
    await mkdir(dirname(log), { recursive: true, mode: 0o700 });
    const pid = await launchInit(rec.id, { root: rt.layout.mountpoint(rec.id), hostname: rec.hostname, log, cgroups });
    const start = startTime(pid);
    if (start === null) throw new RuntimeError('ESTART', `VE ${rec.id}'s PID 1 (host pid ${pid}) ended right after it started; see ${log}`);
    await connect(rec.id, pid, rec);
    rt.state.setStarted(rec.id, pid, start, new Date().toISOString());
    return pid;
  } catch (err) {
    await cleanup(rt, rt.state.ve(rec.id)!);
    throw err;
  }
}

/** 'stopped': it ran and was stopped; 'cleaned': its processes had died already, and what they left is gone. */
async function stopLocked(rt: Runtime, rec: VeRecord, timeoutSeconds: number): Promise<'stopped' | 'cleaned'> {
  if (running(rec)) {
    process.kill(rec.pid!, 'SIGTERM');
    const deadline = Date.now() + timeoutSeconds * 1000;
    while (running(rec) && Date.now() < deadline) await sleep(50);
    // destroyCgroups sends SIGKILL to whatever is left after the timeout.
    await cleanup(rt, rec);
    return 'stopped';
  }
  if (rec.pid === null && rec.cgroups === null && !(await isMounted(rt.layout.mountpoint(rec.id)))) {
    throw new RuntimeError('ESRCH', `VE ${rec.id} is not running`);
  }
  await cleanup(rt, rec);
  return 'cleaned';
}

export async function startVe(rt: Runtime, ref: string): Promise<number> {
  return locked(rt, ref, (rec) => startLocked(rt, rec));
}

export async function stopVe(rt: Runtime, ref: string, timeoutSeconds = 10): Promise<'stopped' | 'cleaned'> {
  if (!(timeoutSeconds >= 0)) throw new RuntimeError('EINVAL', `--timeout ${timeoutSeconds} is not a number of seconds`);
  return locked(rt, ref, (rec) => stopLocked(rt, rec, timeoutSeconds));
}

export async function restartVe(rt: Runtime, ref: string, timeoutSeconds = 10): Promise<number> {
  return locked(rt, ref, async (rec) => {
    if (running(rec)) await stopLocked(rt, rec, timeoutSeconds);
    return startLocked(rt, rt.state.ve(rec.id)!);
  });
}

/** Runs a command in a running VE; resolves its exit status. */
export async function execVe(rt: Runtime, ref: string, command: string[], tty = false): Promise<number> {
  if (command.length === 0) throw new RuntimeError('EINVAL', 'no command given');
  const rec = await locked(rt, ref, async (r) => {
    if (!running(r)) throw new RuntimeError('ESRCH', `VE ${r.id} is not running`);
    if (!(await rt.storage.served(rt.layout.mountpoint(r.id)))) {
      throw new RuntimeError('ESERVER', `VE ${r.id}'s root has no VEFS server any more (it stopped or crashed): stop the VE and start it again`);
    }
    return r;
  }, true);
  return launchExec(rec.id, { pid: rec.pid!, cgroups: rec.cgroups!, tty, command });
}

export async function mountVe(rt: Runtime, ref: string): Promise<string> {
  return locked(rt, ref, async (rec) => {
    if (running(rec)) throw new RuntimeError('EBUSY', `VE ${rec.id} is running: its root is mounted`);
    if (await isMounted(rt.layout.mountpoint(rec.id))) throw new RuntimeError('EALREADY', `VE ${rec.id}'s root is mounted already`);
    await mountRoot(rt, rec);
    return rt.layout.mountpoint(rec.id);
  });
}

export async function umountVe(rt: Runtime, ref: string): Promise<void> {
  return locked(rt, ref, async (rec) => {
    if (running(rec)) throw new RuntimeError('EBUSY', `VE ${rec.id} is running: stop it to unmount its root`);
    if (!(await isMounted(rt.layout.mountpoint(rec.id)))) throw new RuntimeError('EINVAL', `VE ${rec.id}'s root is not mounted`);
    await rt.storage.unmount(rt.layout.mountpoint(rec.id));
  });
}

export async function destroyVe(rt: Runtime, ref: string, force = false): Promise<void> {
  const id = findVe(rt, ref).id;
  const release = lockVe(rt, id);
  try {
    const rec = findVe(rt, String(id));
    if (running(rec)) {
      if (!force) throw new RuntimeError('EBUSY', `VE ${id} is running: stop it first, or destroy it with --force`);
      await stopLocked(rt, rec, 10);
    } else {
      await cleanup(rt, rec);
    }
    const { layout } = rt;
    if (await isMounted(layout.mountpoint(id))) throw new RuntimeError('EBUSY', `VE ${id}'s root ${layout.mountpoint(id)} is still mounted`);
    for (const d of [layout.privateDir(id), layout.workDir(id), layout.mountpoint(id)]) await removeTree(d);
    await rm(layout.log(id), { force: true });
    rt.state.removeVe(id);
    await rm(layout.lock(`ve.${id}`), { force: true });
  } finally {
    release();
  }
}

export async function veStatus(rt: Runtime, rec: VeRecord): Promise<VeStatus> {
  const mp = rt.layout.mountpoint(rec.id);
  const up = running(rec);
  const mounted = await isMounted(mp);
  const u = up && rec.cgroups ? usage(rec.cgroups) : null;
  const events = up && rec.cgroups ? limitEvents(rec.cgroups) : null;
  return {
    id: rec.id, name: rec.name, template: rec.template, hostname: rec.hostname,
    state: up ? 'running' : mounted ? 'mounted' : 'stopped',
    pid: up ? rec.pid : null,
    limits: { memory: rec.memory, pids: rec.pids, cpus: rec.cpus },
    net: { net: rec.net, ip: rec.ip },
    cgroup: up ? rec.cgroups?.version ?? null : null,
    processes: u?.processes ?? 0,
    memoryBytes: u?.memoryBytes ?? 0,
    cpuSeconds: (u?.cpuUsec ?? 0) / 1e6,
    oomKills: events?.oomKills ?? 0,
    forksRefused: events?.forksRefused ?? 0,
    diskBytes: await diskUsed(rt.layout.privateDir(rec.id)),
    storage: up || mounted ? ((await rt.storage.served(mp)) ? 'served' : 'lost') : 'unmounted',
    root: mp,
    log: rt.layout.log(rec.id),
  };
}

export async function listVes(rt: Runtime): Promise<VeStatus[]> {
  const out: VeStatus[] = [];
  for (const rec of rt.state.ves()) out.push(await veStatus(rt, rec));
  return out;
}
