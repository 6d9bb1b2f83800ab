// Step 6: make the planned links, one kept inode (master) and its targets at
// a time. For each target inode, in this order:
//   1. open it below its ROOT and take a read lease: the kernel refuses the
//      lease while any process has the file open for writing (skipped), and
//      while it is held a process that opens the file for writing waits and
//      we see it waiting (F_GETLEASE), so no write can slip in unseen;
//   2. re-check it is the version that was hashed (inode, size, mtime) and
//      all its names are known; run the predicate on live metadata and xattrs;
//   3. compare its bytes with the master's, then stat it once more;
//   4. inside the mutable section (section.ts): for each of its names,
//      re-check that the name still holds the inode, link the master to a
//      temporary name beside it and rename that over the name, so the name
//      is never missing and always shows a whole file;
//   5. the replaced inode, now nameless, gets the immutable flag before the
//      lease goes: a writer that resolved the name before the swap and
//      opens it after gets EPERM on write instead of writing into a file no
//      one will see again. Then the lease is released.
// A writer either keeps its new content (we skip, or we back off when it
// waits) or the file was unchanged and is linked: never a mix.
//
// The master is linked through its descriptor (linkat AT_EMPTY_PATH), so a
// name of it that changed meanwhile cannot make us link another file. On
// EMLINK the master is full: the target in hand becomes the master of the
// rest of the group, as in util-linux hardlink.
import { native, C, type NativeError, type NativeStat } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import { inodeFlags, isImmutable, setImmutable } from './flags.js';
import { openBeneath } from './hash.js';
import type { GroupKey, Member, UnifyIndex } from './index.js';
import type { PlanInode } from './plan.js';
import { mayLink, type FileFacts, type PredicateOptions } from './predicate.js';
import { BENEATH, type Root } from './roots.js';
import { withMutableFds, type MutableEntry } from './section.js';
import { sameBytes } from './verify.js';
import { fdXattrs } from './xattrs.js';

/** Why a target was left as it is; counted in the report. */
export type SkipReason =
  | 'changed' | 'names-elsewhere' | 'open-for-writing' | 'writer-waiting' | 'immutable' | 'append-only'
  | 'content-differs' | 'other-mount' | 'link-limit' | 'not-regular' | 'empty' | 'metacopy'
  | 'other-filesystem' | 'size' | 'mode' | 'owner' | 'group' | 'mtime' | 'xattrs';

export interface LinkCounts {
  linksMade: number;
  inodesReclaimed: number;
  bytesReclaimed: number;
  bytesRead: number;
  skipped: Partial<Record<SkipReason, number>>;
}

export interface LinkContext {
  index: UnifyIndex;
  roots: Map<number, Root>;
  dryRun: boolean;
  predicate: PredicateOptions;
  counts: LinkCounts;
  /** A fresh temporary name: `.vefs-unify.<run>.<n>`. */
  tempName(): string;
}

/** Targets verified together and then linked in one section, to keep sections few but short. */
const BATCH = 16;

interface Open {
  inode: PlanInode;
  fd: number;
  st: NativeStat;
  leased: boolean;
}

const skip = (ctx: LinkContext, why: SkipReason, n = 1): void => {
  ctx.counts.skipped[why] = (ctx.counts.skipped[why] ?? 0) + n;
};

const rootOf = (ctx: LinkContext, m: Member): Root => ctx.roots.get(m.root)!;
const pathOf = (ctx: LinkContext, m: Member): string => rootOf(ctx, m).path + child(m.rel, m.name);

const facts = (fd: number, st: NativeStat): FileFacts => {
  const x = fdXattrs(fd);
  return { dev: st.dev, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec, xattrs: x.digest, metacopy: x.metacopy };
};

const leaseHeld = (o: Open): boolean => !o.leased || native.getlease(o.fd) === C.F_RDLCK;

function release(o: Open): void {
  if (o.leased) native.setlease(o.fd, C.F_UNLCK);
  native.close(o.fd);
}

/**
 * Opens the inode by its first name, checks it is the version the index
 * describes and takes the lease. null, counted, when it must be left alone.
 */
function openInode(ctx: LinkContext, g: GroupKey, inode: PlanInode, allNamesKnown: boolean): Open | null {
  const first = inode.names[0]!;
  let fd: number;
  try {
    fd = openBeneath(rootOf(ctx, first), first.rel, first.name);
  } catch (err) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR', 'EXDEV', 'EAGAIN'].includes((err as NativeError).code)) {
      skip(ctx, 'changed');
      return null;
    }
    throw err;
  }
  const st = native.fstat(fd);
  const reason = st.ino !== inode.ino || st.dev !== g.dev || st.size !== g.size
    || st.mtimeSec !== first.mtimeSec || st.mtimeNsec !== first.mtimeNsec ? 'changed'
    : allNamesKnown && st.nlink !== inode.names.length ? 'names-elsewhere' : null;
  const flags = reason === null ? inodeFlags(fd) : null;
  const immutable = isImmutable(flags);
  const refusal: SkipReason | null = reason
    ?? (flags !== null && (flags & C.FS_APPEND_FL) !== 0 ? 'append-only'
      // Immutable with one name is someone else's choice, not a unified inode.
      : immutable && st.nlink === 1 ? 'immutable' : null);
  if (refusal !== null) {
    skip(ctx, refusal);
    native.close(fd);
    return null;
  }
  const o: Open = { inode, fd, st, leased: false };
  // Leased even when immutable: inside the section the flag is off, and a
  // writer that opens it then must wait for us and find it immutable again.
  if (!ctx.dryRun) {
    try {
      native.setlease(fd, C.F_RDLCK);
      o.leased = true;
    } catch (err) {
      native.close(fd);
      if ((err as NativeError).code === 'EAGAIN') {
        skip(ctx, 'open-for-writing');
        return null;
      }
      throw err;
    }
  }
  return o;
}

/** Steps 1 to 3 for one target: an open, leased, verified target, or null. */
async function verifyTarget(ctx: LinkContext, g: GroupKey, master: Open, masterFacts: FileFacts, inode: PlanInode): Promise<Open | null> {
  const t = openInode(ctx, g, inode, true);
  if (t === null) return null;
  const refusal = mayLink(masterFacts, facts(t.fd, t.st), ctx.predicate);
  let why: SkipReason | null = refusal;
  if (why === null) {
    const counts = { bytes: 0 };
    const same = await sameBytes(master.fd, t.fd, g.size, counts, () => leaseHeld(t) && leaseHeld(master));
    ctx.counts.bytesRead += counts.bytes;
    const now = native.fstat(t.fd);
    if (!leaseHeld(t)) why = 'writer-waiting';
    else if (now.size !== t.st.size || now.mtimeSec !== t.st.mtimeSec || now.mtimeNsec !== t.st.mtimeNsec) why = 'changed';
    else if (!same) why = 'content-differs';
  }
  if (why === null) return t;
  skip(ctx, why);
  release(t);
  return null;
}

export interface Replaced {
  dir: number;
  name: string;
  mtimeSec: number;
  mtimeNsec: number;
  atimeSec: number;
  atimeNsec: number;
}

/** Step 4 for one name: temporary link beside it, renamed over it. */
function replaceName(ctx: LinkContext, master: Open, target: Open, m: Member): 'done' | 'changed' | 'full' | 'other-mount' {
  const dirfd = native.openat2(rootOf(ctx, m).fd, beneath(m.rel), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
  try {
    const now = native.fstatat(dirfd, m.name, C.AT_SYMLINK_NOFOLLOW);
    if (now.ino !== target.st.ino || now.dev !== target.st.dev) return 'changed';
    const tmp = ctx.tempName();
    try {
      native.linkat(master.fd, '', dirfd, tmp, C.AT_EMPTY_PATH);
    } catch (err) {
      const code = (err as NativeError).code;
      if (code === 'EMLINK') return 'full';
      if (code === 'EXDEV') return 'other-mount';
      throw err;
    }
    try {
      native.renameat2(dirfd, tmp, dirfd, m.name, 0);
    } catch (err) {
      native.unlinkat(dirfd, tmp, 0);
      throw err;
    }
    return 'done';
  } catch (err) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR', 'EXDEV'].includes((err as NativeError).code)) return 'changed';
    throw err;
  } finally {
    native.close(dirfd);
  }
}

/** Links the targets' names to the master; returns the master in effect at the end (another one after EMLINK). */
async function linkBatch(ctx: LinkContext, master: Open, batch: Open[], masters: Open[], kept: Map<Open, number[]>,
  replaced: Replaced[]): Promise<Open> {
  const entries: MutableEntry[] = [master, ...batch].map((o) => ({ fd: o.fd, path: pathOf(ctx, o.inode.names[0]!) }));
  let current = master;
  await withMutableFds(entries, () => {
    for (const t of batch) {
      // A writer waits for the target or the master: let it in, link another time.
      if (!leaseHeld(t) || !leaseHeld(current)) {
        skip(ctx, 'writer-waiting');
        continue;
      }
      const names = t.inode.names;
      for (let k = 0; k < names.length; k++) {
        const m = names[k]!;
        const outcome = replaceName(ctx, current, t, m);
        if (outcome === 'full') {
          // The master reached the filesystem's link limit: this target, verified equal, takes over.
          skip(ctx, 'link-limit');
          current = t;
          masters.push(t);
          kept.set(t, names.slice(k).map((n) => n.id));
          break;
        }
        if (outcome !== 'done') {
          skip(ctx, outcome);
          continue;
        }
        ctx.counts.linksMade++;
        kept.get(current)!.push(m.id);
        replaced.push({ dir: m.dir, name: m.name, mtimeSec: t.st.mtimeSec, mtimeNsec: t.st.mtimeNsec,
          atimeSec: t.st.atimeSec, atimeNsec: t.st.atimeNsec });
      }
    }
  });
  return current;
}

/** One master and its targets through steps 1 to 5; everything is counted in ctx.counts. */
export async function linkInto(ctx: LinkContext, g: GroupKey, masterInode: PlanInode, targets: PlanInode[]): Promise<void> {
  const master = openInode(ctx, g, masterInode, false);
  if (master === null) {
    skip(ctx, 'changed', targets.length);
    return;
  }
  const masters: Open[] = [master];
  const kept = new Map<Open, number[]>([[master, masterInode.names.map((n) => n.id)]]);
  const replaced: Replaced[] = [];
  try {
    const masterFacts = facts(master.fd, master.st);
    let current = master;
    for (let i = 0; i < targets.length; i += BATCH) {
      const batch: Open[] = [];
      for (const inode of targets.slice(i, i + BATCH)) {
        const t = await verifyTarget(ctx, g, current, masterFacts, inode);
        if (t !== null) batch.push(t);
      }
      if (batch.length === 0) continue;
      if (ctx.dryRun) {
        for (const t of batch) {
          ctx.counts.linksMade += t.inode.names.length;
          ctx.counts.inodesReclaimed++;
          ctx.counts.bytesReclaimed += g.size;
          release(t);
        }
        continue;
      }
      try {
        current = await linkBatch(ctx, current, batch, masters, kept, replaced);
      } finally {
        for (const t of batch) {
          if (masters.includes(t)) continue;
          if (native.fstat(t.fd).nlink === 0) {
            // Nameless now: a writer that opened it late must fail, not write into the void.
            setImmutable(t.fd, true);
            ctx.counts.inodesReclaimed++;
            ctx.counts.bytesReclaimed += g.size;
          }
          release(t);
        }
      }
    }
    if (!ctx.dryRun) {
      ctx.index.rememberReplaced(replaced);
      for (const m of masters) ctx.index.relinked(kept.get(m)!, native.fstat(m.fd));
    }
  } finally {
    for (const m of masters) release(m);
  }
}
