// Memory cgroups that count page cache by who brought it in. A page is
// charged to the memory cgroup of the process that first read it, so the file
// cache of a fresh cgroup holding only a workload's readers (and one holding
// the FUSE servers that read the backing files on their behalf) is that
// workload's own, whatever else runs on the host; /proc/meminfo's Cached
// counts every process's. cgroup v1 (a `memory` hierarchy) or v2 (a cgroup2
// mount that offers the memory controller).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Hierarchy {
  root: string;
  v2: boolean;
}

function hierarchy(): Hierarchy | null {
  if (existsSync('/sys/fs/cgroup/memory/memory.stat')) return { root: '/sys/fs/cgroup/memory', v2: false };
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type !== 'cgroup2') continue;
    try {
      if (readFileSync(join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory')) return { root: dir, v2: true };
    } catch {
      // a cgroup2 mount we cannot read: not ours to use
    }
  }
  return null;
}

/** Why no memory cgroup can be made here, or null. */
export function memcgUnavailable(): string | null {
  return hierarchy() ? null : 'no memory cgroup controller (neither /sys/fs/cgroup/memory nor a cgroup2 mount offering memory)';
}

/** The memory cgroup a process is in, relative to the hierarchy's root. */
function cgroupOf(pid: number, h: Hierarchy): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (path === undefined) continue;
    if (h.v2 ? controllers === '' : controllers.split(',').includes('memory')) return path;
  }
  throw new Error(`process ${pid} is in no memory cgroup`);
}

export class MemCgroup {
  /** Processes moved in, with the cgroup each came from. */
  private readonly adopted = new Map<number, string>();

  private constructor(private readonly h: Hierarchy, readonly dir: string) {}

  /** A new, empty cgroup below the hierarchy's root. */
  static create(name: string): MemCgroup {
    const h = hierarchy();
    if (!h) throw new Error(memcgUnavailable()!);
    if (h.v2) {
      const control = join(h.root, 'cgroup.subtree_control');
      if (!readFileSync(control, 'utf8').split(/\s+/).includes('memory')) writeFileSync(control, '+memory');
    }
    const dir = join(h.root, name);
    mkdirSync(dir);
    return new MemCgroup(h, dir);
  }

  /** The file that a process writes its PID into to join: a child started as `sh -c 'echo $$ > PROCS && exec ...'`. */
  get procs(): string {
    return join(this.dir, 'cgroup.procs');
  }

  /** Its memory.stat, which a member may read at the moment that matters. */
  get stat(): string {
    return join(this.dir, 'memory.stat');
  }

  /** Bytes of file pages (page cache) charged to the cgroup, from the text of its memory.stat. */
  fileBytes(stat: string): number {
    const key = this.h.v2 ? 'file' : 'cache';
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
    if (!m) throw new Error(`${this.stat} has no ${key} line`);
    return Number(m[1]);
  }

  /** Moves running processes in (all their threads); release() moves them back. */
  adopt(pids: number[]): void {
    for (const pid of pids) {
      if (this.adopted.has(pid)) continue;
      this.adopted.set(pid, cgroupOf(pid, this.h));
      writeFileSync(this.procs, String(pid));
    }
  }

  /** Returns adopted processes where they came from and removes the cgroup; its charges pass to the parent. */
  release(): void {
    for (const [pid, from] of this.adopted) {
      try {
        writeFileSync(join(this.h.root, from, 'cgroup.procs'), String(pid));
      } catch (err) {
        // A process that exited meanwhile (a FUSE server whose mount went away) has nothing to return.
        if (existsSync(`/proc/${pid}`)) throw err;
      }
    }
    this.adopted.clear();
    rmdirSync(this.dir);
  }
}
