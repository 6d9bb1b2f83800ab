// Unmounting: through the server that serves the mount, or, when that server
// is gone (crashed, killed), by detaching the dead mount directly, so a
// crashed server never leaves a VE root stuck.
import { realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { native, C, toBytes } from '../../native/index.js';
import { call } from './control.js';
import { serverRunning } from './daemon.js';
import { drop } from './holder.js';
import { readMounts, VEFS_FSTYPE } from './mounts.js';
import { socketPath } from './state.js';
import { VefsError } from './vefs-error.js';

/** The absolute mountpoint without touching it: a dead FUSE mount answers ENOTCONN to any lookup. */
export async function mountpointPath(arg: string): Promise<string> {
  const abs = resolve(arg);
  return join(await realpath(dirname(abs)).catch(() => dirname(abs)), basename(abs));
}

export async function umount(arg: string): Promise<'server' | 'detached'> {
  const mp = await mountpointPath(arg);
  if (await serverRunning()) {
    if (await call<boolean>(socketPath(), { op: 'umount', mountpoint: mp })) return 'server';
  }
  const entry = (await readMounts()).find((m) => m.mountpoint === mp);
  if (!entry) throw new VefsError('EINVAL', `${mp} is not mounted`);
  if (entry.fstype !== VEFS_FSTYPE) throw new VefsError('EINVAL', `${mp} is not a VEFS mount (it is ${entry.fstype})`);
  native.umount2(toBytes(mp), C.MNT_DETACH);
  // The connection ends once the descriptor holder lets go of it too.
  await drop(mp);
  return 'detached';
}
