// The VEFS server: one process carries every mount of the host. It takes
// mount and umount requests on the control socket and serves each mount
// through a binding. Its event loop is every mount's server, so nothing here
// may do synchronous I/O on a mount: only on the layers beneath them.
import { VefsFs } from './fs.js';
import { checkMount, type MountRequest } from './config.js';
import { mountFuseNative, type BindingOptions, type BoundMount } from './binding/fuse-native.js';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { native, toBytes, type NativeError } from '../../native/index.js';
import { mountKernel, resumeKernel } from './binding/kernel.js';
import { NodeJournal } from './binding/kernel/journal.js';
import { drop, held, hold } from './holder.js';
import { readMounts, VEFS_FSTYPE } from './mounts.js';
import { sessionsDir } from './state.js';
import type { Session } from './binding/kernel/session.js';
import { VefsError } from './vefs-error.js';
import { repairJournal } from '../unify/section.js';
import type { MountConfig } from './types.js';
import type { Status } from './control.js';


/** Enough concurrency to keep a disk busy; low enough that one VE cannot hog the process. */
const IN_FLIGHT_PER_MOUNT = 32;

interface Served {
  config: MountConfig;
  fs: VefsFs;
  bound: BoundMount;
  /** The kernel binding's session: it can invalidate caches and list open files. */
  session: Session | null;
}

/** Where a kernel-binding mount's config and node journal wait for a server that takes over. */
function sessionFiles(mountpoint: string): { config: string; nodes: string } {
  const base = join(sessionsDir(), encodeURIComponent(mountpoint));
  return { config: `${base}.json`, nodes: `${base}.nodes` };
}

const inside = (path: string, dir: string): string | null =>
  path === dir ? '' : path.startsWith(`${dir}/`) ? path.slice(dir.length + 1) : null;

export class MountServer {
  private readonly mounts = new Map<string, Served>();
  private readonly pending = new Set<string>();

  constructor(private readonly log: (message: string) => void) {
    // A server that died inside a mutable section (unified.ts) left a unified inode writable.
    repairJournal();
  }

  async mount(req: MountRequest): Promise<MountConfig> {
    const config = await checkMount(req);
    if (this.mounts.has(config.mountpoint) || this.pending.has(config.mountpoint)) {
      throw new VefsError('EBUSY', `mountpoint ${config.mountpoint} is already mounted`);
    }
    this.pending.add(config.mountpoint);
    const fs = new VefsFs(config);
    try {
      const opts: BindingOptions = { inFlight: IN_FLIGHT_PER_MOUNT, log: this.log, fsname: `vefs:${config.privateDir}` };
      let served: Served;
      if (config.binding === 'kernel') {
        const files = sessionFiles(config.mountpoint);
        mkdirSync(sessionsDir(), { recursive: true, mode: 0o700 });
        writeFileSync(files.config, JSON.stringify(config));
        rmSync(files.nodes, { force: true });
        const bound = mountKernel(fs, config.mountpoint, { ...opts, journal: new NodeJournal(files.nodes) });
        served = { config, fs, bound, session: bound.session };
        // Without the holder the mount works, but would not outlive a crash of this server.
        await hold(config.mountpoint, bound.dev).catch((err: Error) =>
          this.log(`${config.mountpoint}: no descriptor holder, the mount dies with this server: ${err.message}`));
      } else {
        served = { config, fs, bound: await mountFuseNative(fs, config.mountpoint, opts), session: null };
      }
      this.mounts.set(config.mountpoint, served);
      this.log(`mounted ${config.mountpoint} (${config.binding}): templates ${config.templates.join(':')}, private ${config.privateDir}`);
      return config;
    } catch (err) {
      fs.close();
      throw new VefsError('EMOUNT', `cannot mount ${config.mountpoint}: ${(err as Error).message}`);
    } finally {
      this.pending.delete(config.mountpoint);
    }
  }

  /**
   * Resolves false when this server does not serve that mountpoint. A mount
   * still in use (a VE running on it) is refused with EBUSY, unless `detach`
   * (the server is stopping anyway): then it is detached lazily.
   */
  async unmount(mountpoint: string, detach = false): Promise<boolean> {
    const served = this.mounts.get(mountpoint);
    if (!served) return false;
    if (!detach) {
      // On the thread pool: unmounting may send requests to this very server. Not umount(8): its library
      // canonicalizes paths, reads every mount and locks utab, and so can wait on other, busy mounts.
      try {
        await native.umountAsync(toBytes(mountpoint), 0);
      } catch (err) {
        const code = (err as NativeError).code;
        if (code === 'EBUSY') {
          throw new VefsError('EBUSY', `${mountpoint} is busy: processes still use it (see fuser -vm ${mountpoint})`);
        }
        throw new VefsError(code ?? 'EIO', `cannot unmount ${mountpoint}: ${(err as Error).message}`);
      }
    }
    await served.bound.unmount();
    this.mounts.delete(mountpoint);
    served.fs.close();
    if (served.session) {
      await drop(mountpoint);
      const files = sessionFiles(mountpoint);
      rmSync(files.config, { force: true });
      rmSync(files.nodes, { force: true });
    }
    this.log(`unmounted ${mountpoint}`);
    return true;
  }

  /**
   * Takes over the kernel-binding mounts of a server that died: the holder
   * still has their devices, the session files their configs and node IDs.
   * A mount that is gone meanwhile (detached by vefs umount) is let go.
   */
  async recover(): Promise<void> {
    const { pid, devices } = await held();
    const mounted = new Set((await readMounts()).filter((m) => m.fstype === VEFS_FSTYPE).map((m) => m.mountpoint));
    for (const [mountpoint, fd] of devices) {
      const files = sessionFiles(mountpoint);
      try {
        if (!mounted.has(mountpoint)) throw new Error('no longer mounted');
        const config = JSON.parse(readFileSync(files.config, 'utf8')) as MountConfig;
        const replayed = NodeJournal.replay(files.nodes);
        const journal = NodeJournal.rewrite(files.nodes, replayed);
        const dev = native.pidfdGetfd(pid, fd);
        const fs = new VefsFs(config);
        const bound = await resumeKernel(fs, mountpoint, dev, { inFlight: IN_FLIGHT_PER_MOUNT, log: this.log,
          fsname: `vefs:${config.privateDir}`, journal }, replayed);
        this.mounts.set(mountpoint, { config, fs, bound, session: bound.session });
        this.log(`took over ${mountpoint} from a server that died: ${replayed.paths.size} node IDs, passthrough ${replayed.passthrough}`);
      } catch (err) {
        this.log(`cannot take over ${mountpoint}: ${(err as Error).message}; letting it go`);
        await drop(mountpoint);
        rmSync(files.config, { force: true });
        rmSync(files.nodes, { force: true });
      }
    }
  }

  async unmountAll(): Promise<void> {
    for (const mp of [...this.mounts.keys()]) {
      await this.unmount(mp, true).catch((err: Error) => this.log(`unmount ${mp} failed: ${err.message}`));
    }
  }

  /**
   * Host paths that changed behind the mounts (a unify run, a template
   * update): every mount whose private tree or template holds one forgets
   * what it cached about it, and so does the kernel. Resolves to the number
   * of mounts told. fuse-native mounts cache nothing in the kernel (attr_timeout=0)
   * and resolve paths per request, so only their union cache is dropped.
   */
  async invalidate(paths: string[]): Promise<number> {
    let told = 0;
    for (const s of this.mounts.values()) {
      const sent: Promise<void>[] = [];
      for (const path of paths) {
        const rel = [s.config.privateDir, ...s.config.templates].map((d) => inside(path, d)).find((r) => r !== null);
        if (rel === undefined || rel === null) continue;
        if (s.session) sent.push(...s.session.invalidate(rel));
        else s.fs.forget(rel);
      }
      if (sent.length > 0) told++;
      await Promise.all(sent);
    }
    return told;
  }

  /** Host paths of private files that a VE holds open for writing: unify leaves them alone. */
  openForWriting(): string[] {
    return [...this.mounts.values()].flatMap((s) =>
      (s.session?.openForWriting() ?? []).map((rel) => `${s.config.privateDir}/${rel}`));
  }

  status(): Status {
    return {
      pid: process.pid,
      rssBytes: process.memoryUsage.rss(),
      mounts: [...this.mounts.values()].map((s) => s.config),
      sessions: [...this.mounts.values()].flatMap((s) => s.session ? [{
        mountpoint: s.config.mountpoint,
        passthrough: s.session.passthroughActive,
        nodes: s.session.table.size,
        requests: s.session.counts(),
      }] : []),
    };
  }
}
