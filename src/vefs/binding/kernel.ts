// The kernel-protocol binding: VEFS speaks FUSE to /dev/fuse itself. The
// addon's one reader thread (native/src/fusedev.cc) reads every mount's
// device and hands what it read to this process in batches; each mount's
// Session (kernel/session.ts) translates requests into VefsFs calls.
import { native, toBytes } from '../../../native/index.js';
import type { VefsFs } from '../fs.js';
import type { BindingOptions, BoundMount } from './fuse-native.js';
import type { NodeJournal, Replayed } from './kernel/journal.js';
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
  /** The device, which the descriptor holder keeps a copy of (holder.ts). */
  readonly dev: number;
}

export interface KernelOptions extends BindingOptions {
  journal: NodeJournal | null;
}

function ensureReader(): void {
  if (!started) {
    native.fuseStart(deliver);
    started = true;
  }
}

/** Serves a mounted device: its requests go to the session from now on. */
function serve(dev: number, session: Session, mountpoint: string, journal: NodeJournal | null): KernelMount {
  sessions.set(dev, session);
  // Only a mounted device can be polled: before, it answers EPOLLERR and never wakes a waiter.
  native.fuseAdd(dev);
  let gone = false;
  return {
    mountpoint,
    session,
    dev,
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
      journal?.close();
      native.close(dev);
    },
  };
}

export function mountKernel(fs: VefsFs, mountpoint: string, opts: KernelOptions): KernelMount {
  ensureReader();
  const dev = native.fuseOpenDevice();
  const session = new Session(fs, dev, mountpoint, {
    inFlight: opts.inFlight, log: opts.log, validity: VALIDITY, passthrough: true, journal: opts.journal, resume: null,
  });
  try {
    // nodev and nosuid as for any FUSE mount; user_id/group_id name who may unmount it.
    native.mount(toBytes(opts.fsname), toBytes(mountpoint), 'fuse.vefs', native.constants.MS_NODEV | native.constants.MS_NOSUID,
      `fd=${dev},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions`);
  } catch (err) {
    native.close(dev);
    throw err;
  }
  return serve(dev, session, mountpoint, opts.journal);
}

/**
 * Takes over a mount whose server died: dev is the same connection, taken
 * back from the descriptor holder; the journal's IDs are answered for, and
 * the requests the dead server had read are asked for again.
 */
export async function resumeKernel(fs: VefsFs, mountpoint: string, dev: number, opts: KernelOptions,
  replayed: Replayed): Promise<KernelMount> {
  ensureReader();
  const session = new Session(fs, dev, mountpoint, {
    inFlight: opts.inFlight, log: opts.log, validity: VALIDITY, passthrough: replayed.passthrough, journal: opts.journal,
    resume: { replayed },
  });
  // Before the first read: RESEND puts back every request read and not answered, which after the first read
  // would include this server's own; such a request came twice and was done twice (an rmdir whose second
  // run failed with ENOENT, seen in test/restart.test.ts).
  await session.resend();
  return serve(dev, session, mountpoint, opts.journal);
}
