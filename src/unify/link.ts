// Step 6: make the planned links. Each group's kept inode (master) stays
// open while its targets are checked; the targets of several groups are then
// linked together in one mutable section (Linker), so sections are few and
// each is still short. For each target inode, in this order:
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
import { close } from 'node:fs';
import { promisify } from 'node:util';
import { native, C, type NativeError, type NativeStat } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import { keepingDirTimes } from './dirtimes.js';
import { inodeFlags, isImmutable } from './flags.js';
import { openBeneath } from './hash.js';
import type { GroupKey, Member } from './groups.js';
import type { UnifyIndex } from './index.js';
import type { PlanInode } from './plan.js';
import { mayLink, type FileFacts, type PredicateOptions } from './predicate.js';
import { BENEATH, type Root } from './roots.js';
import { dirStamp } from './scan.js';
import { withMutableFds, type AddToSection, type MutableEntry } from './section.js';
import { compareBytes } from './verify.js';
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
  /** Descriptors being closed; the caller awaits them now and then. */
  closing: Promise<void>[];
  /** Targets left for another run (changed, busy, refused at the last moment). */
  transient: number;
}

/** Target inodes of one group verified at a time (each holds a descriptor and a lease until linked). */
const VERIFY_CHUNK = 16;
/** A section links at most about this many target inodes. */
const BATCH_TARGETS = 256;

interface Open {
  inode: PlanInode;
  fd: number;
  st: NativeStat;
  /** Inode flags when opened (null: the filesystem has none); under the lease nothing else changes them. */
  flags: number | null;
  leased: boolean;
}

/** Errors that mean a name's directory was changed under us (gone, swapped for a symlink or a mount): skip it. */
const movedAway = (err: unknown): boolean => ['ENOENT', 'ELOOP', 'ENOTDIR', 'EXDEV'].includes((err as NativeError).code);

const skip = (ctx: LinkContext, why: SkipReason, n = 1): void => {
  ctx.counts.skipped[why] = (ctx.counts.skipped[why] ?? 0) + n;
  ctx.transient += n;
};

const rootOf = (ctx: LinkContext, m: Member): Root => ctx.roots.get(m.root)!;
const pathOf = (ctx: LinkContext, m: Member): string => rootOf(ctx, m).path + child(m.rel, m.name);

const facts = (fd: number, st: NativeStat): FileFacts => {
  const x = fdXattrs(fd);
  return { dev: st.dev, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec, xattrs: x.digest, metacopy: x.metacopy };
};

const leaseHeld = (o: Open): boolean => !o.leased || native.getlease(o.fd) === C.F_RDLCK;

const closeAsync = promisify(close);

/**
 * Closing the descriptor drops the lease; for a replaced inode it is the
 * last reference, and the kernel frees its blocks right there. That is the
 * costly part of reclaiming, so it happens on the thread pool.
 */
const release = (ctx: LinkContext, o: Open): void => {
  ctx.closing.push(closeAsync(o.fd));
};

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
    // EAGAIN: openat2 met a concurrent rename below the ROOT.
    if (movedAway(err) || (err as NativeError).code === 'EAGAIN') {
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
  const o: Open = { inode, fd, st, flags, leased: false };
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

/** Steps 1 and 2 for one target: open, leased, the predicate holds on live metadata; else null. */
function prepareTarget(ctx: LinkContext, g: GroupKey, masterFacts: FileFacts, inode: PlanInode): Open | null {
  const t = openInode(ctx, g, inode, true);
  if (t === null) return null;
  const refusal = mayLink(masterFacts, facts(t.fd, t.st), ctx.predicate);
  if (refusal === null) return t;
  skip(ctx, refusal);
  release(ctx, t);
  return null;
}

/** Step 3 for a batch of prepared targets: equal bytes, and unchanged since (a re-stat). */
async function verifyTargets(ctx: LinkContext, g: GroupKey, master: Open, targets: Open[]): Promise<Open[]> {
  const counts = { bytes: 0 };
  const verdicts = await compareBytes(master.fd, targets.map((t) => t.fd), g.size, !ctx.dryRun, counts);
  ctx.counts.bytesRead += counts.bytes;
  return targets.filter((t, i) => {
    const now = native.fstat(t.fd);
    // The comparison watched the leases while it read; the section looks once more just before linking.
    const why: SkipReason | null = verdicts[i] === 'writer-waiting' ? 'writer-waiting'
      : now.size !== t.st.size || now.mtimeSec !== t.st.mtimeSec || now.mtimeNsec !== t.st.mtimeNsec ? 'changed'
        : verdicts[i] !== 'same' ? 'content-differs' : null;
    if (why === null) return true;
    skip(ctx, why);
    release(ctx, t);
    return false;
  });
}

export interface Replaced {
  dir: number;
  name: string;
  mtimeSec: number;
  mtimeNsec: number;
  atimeSec: number;
  atimeNsec: number;
}

type Outcome = 'done' | 'changed' | 'full' | 'other-mount';

/**
 * The directories of one section's names, each opened once beneath its ROOT
 * (a new VE's files are mostly one per group, and many groups share a
 * directory). null: the directory is gone or no longer one.
 */
class SectionDirs {
  private readonly fds = new Map<number, number | null>();

  constructor(private readonly ctx: LinkContext) {}

  of(m: Member): number | null {
    let fd = this.fds.get(m.dir);
    if (fd === undefined) {
      try {
        fd = native.openat2(rootOf(this.ctx, m).fd, beneath(m.rel), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
      } catch (err) {
        if (!movedAway(err)) throw err;
        fd = null;
      }
      this.fds.set(m.dir, fd);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) if (fd !== null) native.close(fd);
    this.fds.clear();
  }
}

/** Step 4 for one name: temporary link beside it, renamed over it. */
function replaceName(ctx: LinkContext, dirs: SectionDirs, master: Open, target: Open, m: Member): Outcome {
  const dirfd = dirs.of(m);
  if (dirfd === null) return 'changed';
  try {
    const now = native.fstatat(dirfd, m.name, C.AT_SYMLINK_NOFOLLOW);
    if (now.ino !== target.st.ino || now.dev !== target.st.dev) return 'changed';
    // The walk's stamp of this directory stays valid through our own change (scan.ts).
    const restamp = (before: NativeStat, now: NativeStat): void => ctx.index.restamp(m.dir, dirStamp(before), dirStamp(now));
    return keepingDirTimes(dirfd, (): Outcome => {
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
    }, restamp);
  } catch (err) {
    if (movedAway(err)) return 'changed';
    throw err;
  }
}

/** One master's verified targets, waiting to be linked in the next section. */
interface Unit {
  g: GroupKey;
  /** The master in effect; after EMLINK, the target that took over. */
  current: Open;
  masters: Open[];
  /** Names each master gained. */
  added: Map<Open, number[]>;
  /** Inodes of targets that lost all their names. */
  gone: bigint[];
  targets: Open[];
  replaced: Replaced[];
}

/** Links one unit's targets inside the current section. */
function linkUnit(ctx: LinkContext, dirs: SectionDirs, u: Unit, add: AddToSection): void {
  // A writer waits for the master or a target: let it in, link another time.
  if (!leaseHeld(u.current)) {
    skip(ctx, 'writer-waiting', u.targets.length);
    return;
  }
  for (const t of u.targets) {
    if (!leaseHeld(t)) {
      skip(ctx, 'writer-waiting');
      continue;
    }
    const names = t.inode.names;
    for (let k = 0; k < names.length; k++) {
      const m = names[k]!;
      const outcome = replaceName(ctx, dirs, u.current, t, m);
      if (outcome === 'full') {
        // The master reached the filesystem's link limit: this target, verified equal, takes over.
        skip(ctx, 'link-limit');
        // It gains names from here on: the section must journal it and give it the flag at the end.
        add({ fd: t.fd, path: pathOf(ctx, t.inode.names[0]!) });
        u.current = t;
        u.masters.push(t);
        u.added.set(t, []);
        break;
      }
      if (outcome !== 'done') {
        skip(ctx, outcome);
        continue;
      }
      ctx.counts.linksMade++;
      u.added.get(u.current)!.push(m.id);
      // Only a name whose own mtime differed (--ignore-mtime) needs it remembered for --revert.
      if (t.st.mtimeSec !== u.current.st.mtimeSec || t.st.mtimeNsec !== u.current.st.mtimeNsec) {
        u.replaced.push({ dir: m.dir, name: m.name, mtimeSec: t.st.mtimeSec, mtimeNsec: t.st.mtimeNsec,
          atimeSec: t.st.atimeSec, atimeNsec: t.st.atimeNsec });
      }
    }
  }
}

/** After the section: replaced inodes are sealed and let go. */
function settle(ctx: LinkContext, u: Unit): void {
  for (const t of u.targets) {
    if (u.masters.includes(t)) continue;
    if (native.fstat(t.fd).nlink === 0) {
      // Nameless now: a writer that opened it late must fail, not write into the void.
      if (t.flags !== null && !isImmutable(t.flags)) native.setflags(t.fd, t.flags | C.FS_IMMUTABLE_FL);
      u.gone.push(t.st.ino);
      ctx.counts.inodesReclaimed++;
      ctx.counts.bytesReclaimed += u.g.size;
    }
    release(ctx, t);
  }
  u.targets = [];
}

/**
 * Gathers units from the groups in flight and links them together, one
 * section per batch rather than per group: fewer lock and journal rounds,
 * each section still short (at most BATCH_TARGETS targets). A batch goes as
 * soon as it is full or every group in flight is waiting for it.
 */
export class Linker {
  private pending: { unit: Unit; done: () => void; failed: (err: unknown) => void }[] = [];
  private pendingTargets = 0;
  private inflight = 0;

  constructor(private readonly ctx: LinkContext) {}

  enter(): void {
    this.inflight++;
  }

  leave(): void {
    this.inflight--;
    this.maybeFlush();
  }

  link(unit: Unit): Promise<void> {
    return new Promise((done, failed) => {
      this.pending.push({ unit, done, failed });
      this.pendingTargets += unit.targets.length;
      this.maybeFlush();
    });
  }

  private maybeFlush(): void {
    if (this.pending.length > 0 && (this.pendingTargets >= BATCH_TARGETS || this.pending.length >= this.inflight)) {
      const batch = this.pending;
      this.pending = [];
      this.pendingTargets = 0;
      void this.flush(batch);
    }
  }

  private async flush(batch: Linker['pending']): Promise<void> {
    const ctx = this.ctx;
    // Only inodes whose flag the section may change: the masters (they gain names, and the flag) and
    // targets that are unified already (their flag must go for their names to be replaced). A target
    // without the flag only loses names and keeps no flag; journaling it would cost five calls a link.
    const entries: MutableEntry[] = batch.flatMap(({ unit }) => [unit.current, ...unit.targets.filter((t) => isImmutable(t.flags))])
      .map((o) => ({ fd: o.fd, path: pathOf(ctx, o.inode.names[0]!) }));
    const dirs = new SectionDirs(ctx);
    try {
      await withMutableFds(entries, (add) => {
        for (const { unit } of batch) linkUnit(ctx, dirs, unit, add);
      });
    } catch (err) {
      for (const b of batch) b.failed(err);
      return;
    } finally {
      dirs.close();
      for (const { unit } of batch) settle(ctx, unit);
    }
    for (const b of batch) b.done();
  }
}

/** One group's master and its targets through steps 1 to 5; everything is counted in ctx.counts. */
export async function linkInto(ctx: LinkContext, linker: Linker | null, g: GroupKey, masterInode: PlanInode, targets: PlanInode[]): Promise<void> {
  const master = openInode(ctx, g, masterInode, false);
  if (master === null) {
    skip(ctx, 'changed', targets.length);
    return;
  }
  const unit: Unit = { g, current: master, masters: [master], added: new Map([[master, []]]), gone: [], targets: [], replaced: [] };
  try {
    const masterFacts = facts(master.fd, master.st);
    for (let i = 0; i < targets.length; i += VERIFY_CHUNK) {
      const prepared = targets.slice(i, i + VERIFY_CHUNK).map((inode) => prepareTarget(ctx, g, masterFacts, inode))
        .filter((t): t is Open => t !== null);
      unit.targets = await verifyTargets(ctx, g, master, prepared);
      if (unit.targets.length === 0) continue;
      if (linker === null) {
        for (const t of unit.targets) {
          ctx.counts.linksMade += t.inode.names.length;
          ctx.counts.inodesReclaimed++;
          ctx.counts.bytesReclaimed += g.size;
          release(ctx, t);
        }
        unit.targets = [];
        continue;
      }
      await linker.link(unit);
    }
    if (linker !== null) {
      ctx.index.rememberReplaced(unit.replaced);
      unit.masters.forEach((m, i) => ctx.index.linked(native.fstat(m.fd), isImmutable(inodeFlags(m.fd)), unit.added.get(m)!,
        i === 0 ? unit.gone : []));
    }
  } finally {
    for (const t of unit.targets) release(ctx, t);
    for (const m of unit.masters) release(ctx, m);
  }
}
