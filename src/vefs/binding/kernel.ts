// The kernel-protocol binding: VEFS speaks FUSE to /dev/fuse itself. The
// addon's one reader thread (native/src/fusedev.cc) reads every mount's
// device and hands what it read to this process in batches; each mount's
// Session (kernel/session.ts) translates requests into VefsFs calls.
import { native, toBytes } from '../../../native/index.js';
import type { VefsFs } from '../fs.js';
import type { BindingOptions, BoundMount } from './fuse-native.js';
import { Session } from './kernel/session.js';

const sessions = new Map<number, Session>();
let started = false;

function deliver(fds: number[], requests: (Buffer | null)[]): void {
  for (let i = 0; i < fds.length; i++) {
    const s = sessions.get(fds[i]);
    const buf = requests[i];
    if (s && buf) s.receive(buf);
  }
}

/**
 * Cache validity: the kernel answers stat and lookups itself for this long.
 * Changes made through the mount it sees; changes behind it are announced
 * (Session.invalidate), so the time only bounds what an unannounced change
 * to a tree (which overlayfs also leaves undefined) can hide.
 */
const VALIDITY = { entrySec: 10, attrSec: 10 };

export interface KernelMount extends BoundMount {
  readonly session: Session;
}

export async function mountKernel(fs: VefsFs, mountpoint: string, opts: BindingOptions): Promise<KernelMount> {
  if (!started) {
    native.fuseStart(deliver);
    started = true;
  }
  const dev = native.fuseOpenDevice();
  const session = new Session(fs, dev, mountpoint, {
    inFlight: opts.inFlight, log: opts.log, validity: VALIDITY, passthrough: true,
  });
  sessions.set(dev, session);
  try {
    // nodev and nosuid as for any FUSE mount; user_id/group_id name who may unmount it.
    native.mount(toBytes(opts.fsname), toBytes(mountpoint), 'fuse.vefs', native.constants.MS_NODEV | native.constants.MS_NOSUID,
      `fd=${dev},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions`);
    // Only a mounted device can be polled: before, it answers EPOLLERR and never wakes a waiter.
    native.fuseAdd(dev);
  } catch (err) {
    sessions.delete(dev);
    native.fuseRemove(dev);
    native.close(dev);
    throw err;
  }
  let gone = false;
  return {
    mountpoint,
    session,
    unmount: async () => {
      if (gone) return;
      gone = true;
      // The caller unmounted it already, or wants it detached: either way no new request comes.
      try {
        native.umount2(toBytes(mountpoint), native.constants.MNT_DETACH);
      } catch {
        // EINVAL: not mounted any more
      }
      sessions.delete(dev);
      native.fuseRemove(dev);
      await session.close();
      native.close(dev);
    },
  };
}
