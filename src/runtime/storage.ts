// What a VE's root is mounted with. The runtime uses VEFS (one server per
// host, through its control socket); the interface exists so that `vefs
// bench` can run the same VEs on the roots of the union filesystems it
// compares VEFS with.
import { setTimeout as sleep } from 'node:timers/promises';
import { call, type Status } from '../vefs/control.js';
import { ensureServer, serverRunning } from '../vefs/daemon.js';
import { readMounts } from '../vefs/mounts.js';
import { socketPath } from '../vefs/state.js';
import { umount } from '../vefs/umount.js';
import type { VefsError } from '../vefs/vefs-error.js';

export interface RootRequest {
  template: string;
  privateDir: string;
  workDir: string;
  mountpoint: string;
}

export interface RootStorage {
  mount(req: RootRequest): Promise<void>;
  unmount(mountpoint: string): Promise<void>;
  /** Whether what serves the mount still does (a FUSE server can die under it). */
  served(mountpoint: string): Promise<boolean>;
}

export async function isMounted(mountpoint: string): Promise<boolean> {
  return (await readMounts()).some((m) => m.mountpoint === mountpoint);
}

export const vefsStorage: RootStorage = {
  async mount(req) {
    await ensureServer();
    const { template, privateDir, workDir, mountpoint } = req;
    await call(socketPath(), { op: 'mount', request: { templates: [template], privateDir, workDir, mountpoint } });
  },
  async unmount(mountpoint) {
    // The last processes of a VE let go of its root a moment after they are reaped.
    for (let tries = 0; ; tries++) {
      try {
        await umount(mountpoint);
        return;
      } catch (err) {
        if ((err as VefsError).code !== 'EBUSY' || tries >= 50) throw err;
        await sleep(100);
      }
    }
  },
  async served(mountpoint) {
    if (!(await serverRunning())) return false;
    const s = await call<Status>(socketPath(), { op: 'status' }).catch(() => null);
    return s?.mounts.some((m) => m.mountpoint === mountpoint) ?? false;
  },
};
