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
//
// The system calls run in the addon (native/src/link.cc) and what they see
// is judged here: steps 1 to 3 for several groups per prepareLinks call on
// the thread pool, 4 and 5 for a whole section in one replaceNames call on
// this thread (on the pool it waited behind other work with the lock held),
// and the closes, which free the replaced inodes' blocks, on the addon's
// closing threads (closer.ts).
import { native, C, PREP_FIELDS, PrepField as F, REPLACE_STAMP_FIELDS, REPLACE_TARGET_FIELDS, ReplaceOutcome, Verdict,
  type NativeError } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import type { Closer } from './closer.js';
import { isImmutable } from './flags.js';
import type { GroupKey, Member } from './groups.js';
import type { UnifyIndex } from './index.js';
import type { PlanInode } from './plan.js';
import { mayLink, type FileFacts, type PredicateOptions } from './predicate.js';
import { BENEATH, type Root } from './roots.js';
import { stamp } from './scan.js';
import { withMutableFds, type AddToSection, type MutableEntry } from './section.js';
import type { TempNames } from './token.js';
import { fdXattrs, NO_XATTRS } from './xattrs.js';

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
  temps: TempNames;
  closer: Closer;
  /** Targets left for another run (changed, busy, refused at the last moment). */
  transient: number;
}

/** Target inodes of one group verified at a time (each holds a descriptor and a lease until linked). */
export const VERIFY_CHUNK = 16;
/** A section links at most about this many target inodes. */
export const BATCH_TARGETS = 512;

/** What prepareLinks saw of an inode once it had it open. */
interface Seen extends FileFacts {
  ino: bigint;
  nlink: number;
  atimeSec: number;
  atimeNsec: number;
}

interface Open {
  inode: PlanInode;
  fd: number;
  st: Seen;
  /** Inode flags when opened (null: the filesystem has none); under the lease nothing else changes them. */
  flags: number | null;
  leased: boolean;
}

const skip = (ctx: LinkContext, why: SkipReason, n = 1): void => {
  ctx.counts.skipped[why] = (ctx.counts.skipped[why] ?? 0) + n;
  ctx.transient += n;
};

const rootOf = (ctx: LinkContext, m: Member): Root => ctx.roots.get(m.root)!;
const pathOf = (ctx: LinkContext, m: Member): string => rootOf(ctx, m).path + child(m.rel, m.name);

const release = (ctx: LinkContext, fds: number[]): void => ctx.closer.add(fds);

/** A group's part of a prepareLinks answer: its rows start at row `at`. */
interface Prepared {
  facts: Float64Array;
  ids: BigUint64Array;
  at: number;
}

interface PrepRequest {
  master: number;
  inodes: PlanInode[];
  size: number;
  resolve: (r: Prepared) => void;
  reject: (err: unknown) => void;
}

/** prepareLinks calls at once: two of the pool's four threads. */
const PREP_CALLS = 2;
/** Groups per prepareLinks call at most. */
const PREP_GROUPS = 64;

/**
 * Gathers the groups' requests into few prepareLinks calls: a call per
 * group cost the event loop ~40 us (an async work item and its promise).
 * At most PREP_CALLS run at once: with the event loop they keep two cores
 * busy, and the pool, which serves first come first, keeps threads free for
 * what must not queue behind them (the section lock's wait, fsyncs).
 * Requests made meanwhile go in the next call.
 */
class Preparer {
  private waiting: PrepRequest[] = [];
  private running = 0;

  constructor(private readonly ctx: LinkContext) {}

  prepare(master: number, inodes: PlanInode[], size: number): Promise<Prepared> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ master, inodes, size, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < PREP_CALLS && this.waiting.length > 0) {
      this.running++;
      void this.call(this.waiting.splice(0, PREP_GROUPS)).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async call(batch: PrepRequest[]): Promise<void> {
    const ctx = this.ctx;
    const groups = new Float64Array(batch.length * 3);
    const roots: number[] = [];
    const paths: string[] = [];
    batch.forEach((q, k) => {
      groups.set([q.master, q.inodes.length, q.size], 3 * k);
      for (const i of q.inodes) {
        const first = i.names[0]!;
        roots.push(rootOf(ctx, first).fd);
        paths.push(beneath(child(first.rel, first.name)));
      }
    });
    try {
      const r = await native.prepareLinks(groups, Int32Array.from(roots), paths, !ctx.dryRun);
      ctx.counts.bytesRead += r.bytesRead;
      let at = 0;
      for (const q of batch) {
        q.resolve({ facts: r.facts, ids: r.ids, at });
        at += q.inodes.length;
      }
    } catch (err) {
      for (const q of batch) q.reject(err);
    }
  }
}

const preparers = new WeakMap<LinkContext, Preparer>();

/**
 * Row k of a prepareLinks answer as an Open: the version the index
 * describes, leased. null, counted and closed, when it must be left alone.
 */
function accept(ctx: LinkContext, g: GroupKey, r: Prepared, k: number, inode: PlanInode, allNamesKnown: boolean): Open | null {
  const f = r.facts;
  const at = k * PREP_FIELDS;
  if (f[at + F.Err] !== 0) {
    skip(ctx, 'changed');
    return null;
  }
  const fd = f[at + F.Fd]!;
  const first = inode.names[0]!;
  const x = f[at + F.HasXattrs] ? fdXattrs(fd) : NO_XATTRS;
  const st: Seen = { dev: r.ids[2 * k]!, ino: r.ids[2 * k + 1]!, nlink: f[at + F.Nlink]!, mode: f[at + F.Mode]!, uid: f[at + F.Uid]!,
    gid: f[at + F.Gid]!, size: f[at + F.Size]!, mtimeSec: f[at + F.MtimeSec]!, mtimeNsec: f[at + F.MtimeNsec]!,
    atimeSec: f[at + F.AtimeSec]!, atimeNsec: f[at + F.AtimeNsec]!, xattrs: x.digest, metacopy: x.metacopy };
  const flags = f[at + F.Flags]! < 0 ? null : f[at + F.Flags]!;
  const refusal: SkipReason | null = st.ino !== inode.ino || st.dev !== g.dev || st.size !== g.size
    || st.mtimeSec !== first.mtimeSec || st.mtimeNsec !== first.mtimeNsec ? 'changed'
    // A kept inode may have names elsewhere only as a template's or a unified one (plan.ts), as it is now.
    : st.nlink !== inode.count && (allNamesKnown || (!inode.template && !isImmutable(flags))) ? 'names-elsewhere'
      : flags !== null && (flags & C.FS_APPEND_FL) !== 0 ? 'append-only'
        // Immutable with one name is someone else's choice, not a unified inode.
        : isImmutable(flags) && st.nlink === 1 ? 'immutable'
          // Leased even when immutable: inside the section the flag is off, and a
          // writer that opens it then must wait for us and find it immutable again.
          : f[at + F.LeaseErr] !== 0 ? 'open-for-writing' : null;
  if (refusal !== null) {
    skip(ctx, refusal);
    release(ctx, [fd]);
    return null;
  }
  return { inode, fd, st, flags, leased: !ctx.dryRun };
}

/** Steps 1 to 3 for the targets of one group's chunk: opened, leased, the predicate holds, the bytes are equal. */
function acceptTarget(ctx: LinkContext, g: GroupKey, master: Open, r: Prepared, k: number, inode: PlanInode): Open | null {
  const t = accept(ctx, g, r, k, inode, true);
  if (t === null) return null;
  const at = k * PREP_FIELDS;
  const f = r.facts;
  const verdict = f[at + F.Verdict];
  // The comparison watched the leases while it read; replaceNames looks once more just before linking.
  const why: SkipReason | null = mayLink(master.st, t.st, ctx.predicate)
    ?? (verdict === Verdict.WriterWaiting ? 'writer-waiting'
      : f[at + F.NowSize] !== t.st.size || f[at + F.NowMtimeSec] !== t.st.mtimeSec || f[at + F.NowMtimeNsec] !== t.st.mtimeNsec
        ? 'changed' : verdict !== Verdict.Same ? 'content-differs' : null);
  if (why === null) return t;
  skip(ctx, why);
  release(ctx, [t.fd]);
  return null;
}

/**
 * Opens the master (unless open already) and a chunk of targets and compares
 * them (native prepareLinks). The master is null when it must be left alone;
 * its chunk's targets are then closed and not counted.
 */
async function prepare(ctx: LinkContext, g: GroupKey, master: Open | null, masterInode: PlanInode, chunk: PlanInode[]):
  Promise<{ master: Open | null; targets: Open[] }> {
  const inodes = master === null ? [masterInode, ...chunk] : chunk;
  let preparer = preparers.get(ctx);
  if (preparer === undefined) preparers.set(ctx, preparer = new Preparer(ctx));
  const r = await preparer.prepare(master?.fd ?? -1, inodes, g.size);
  const base = r.at + (master === null ? 1 : 0);
  master ??= accept(ctx, g, r, r.at, masterInode, false);
  if (master === null) {
    release(ctx, chunk.map((_, k) => (k + base) * PREP_FIELDS).filter((at) => r.facts[at + F.Err] === 0).map((at) => r.facts[at + F.Fd]!));
    return { master, targets: [] };
  }
  const m = master;
  const targets = chunk.map((inode, k) => acceptTarget(ctx, g, m, r, k + base, inode)).filter((t): t is Open => t !== null);
  return { master, targets };
}

/**
 * The directories of one section's names, each opened once beneath its ROOT
 * (a new VE's files are mostly one per group, and many groups share a
 * directory). -1: the directory is gone or no longer one.
 */
class SectionDirs {
  private readonly fds = new Map<number, number>();

  constructor(private readonly ctx: LinkContext) {}

  of(m: Member): number {
    let fd = this.fds.get(m.dir);
    if (fd === undefined) {
      try {
        fd = native.openat2(rootOf(this.ctx, m).fd, beneath(m.rel), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
      } catch (err) {
        if (!['ENOENT', 'ELOOP', 'ENOTDIR', 'EXDEV', 'EAGAIN'].includes((err as NativeError).code)) throw err;
        fd = -1;
      }
      this.fds.set(m.dir, fd);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) if (fd >= 0) native.close(fd);
    this.fds.clear();
  }
}

export interface Replaced {
  dir: number;
  name: string;
  mtimeSec: number;
  mtimeNsec: number;
  atimeSec: number;
  atimeNsec: number;
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
  /** Directories whose stamp our own links moved: [dir, stamp before, stamp after]. */
  restamps: [number, string, string][];
}

const OUTCOME_SKIPS: Partial<Record<ReplaceOutcome, SkipReason>> = {
  [ReplaceOutcome.Changed]: 'changed', [ReplaceOutcome.OtherMount]: 'other-mount',
};

/** Takes in replaceNames' outcome for the names of target t (from name n on). */
function recordTarget(ctx: LinkContext, u: Unit, t: Open, r: ReturnType<typeof native.replaceNames>, n: number, gone: boolean): void {
  const names = t.inode.names;
  if (r.outcomes[n] === ReplaceOutcome.WriterWaiting) {
    skip(ctx, 'writer-waiting');
    return;
  }
  for (let j = 0; j < names.length; j++) {
    const o = r.outcomes[n + j] as ReplaceOutcome;
    if (o !== ReplaceOutcome.Done) {
      const why = OUTCOME_SKIPS[o];
      if (why !== undefined) skip(ctx, why);
      continue;
    }
    const m = names[j]!;
    ctx.counts.linksMade++;
    u.added.get(u.current)!.push(m.id);
    // The walk's stamp of this directory stays valid through our own change (scan.ts).
    const s = (n + j) * REPLACE_STAMP_FIELDS;
    const st = r.stamps;
    const ino = r.dirInos[n + j]!;
    u.restamps.push([m.dir, stamp(ino, st[s]!, st[s + 1]!, st[s + 2]!, st[s + 3]!), stamp(ino, st[s + 4]!, st[s + 5]!, st[s + 6]!, st[s + 7]!)]);
    // Only a name whose own mtime differed (--ignore-mtime) needs it remembered for --revert.
    if (t.st.mtimeSec !== u.current.st.mtimeSec || t.st.mtimeNsec !== u.current.st.mtimeNsec) {
      u.replaced.push({ dir: m.dir, name: m.name, mtimeSec: t.st.mtimeSec, mtimeNsec: t.st.mtimeNsec,
        atimeSec: t.st.atimeSec, atimeNsec: t.st.atimeNsec });
    }
  }
  if (gone) {
    u.gone.push(t.st.ino);
    ctx.counts.inodesReclaimed++;
    ctx.counts.bytesReclaimed += u.g.size;
  }
}

/**
 * Step 4 for the units of one section: one replaceNames call for all their
 * targets, and one more after each hand-over on EMLINK.
 */
function linkUnits(ctx: LinkContext, dirs: SectionDirs, units: Unit[], add: AddToSection): void {
  let work = units.flatMap((u) => u.targets.map((t) => ({ u, t })));
  while (work.length > 0) {
    const fields = new Float64Array(work.length * REPLACE_TARGET_FIELDS);
    const ids = new BigUint64Array(work.length * 2);
    const dirFds: number[] = [];
    const names: string[] = [];
    work.forEach(({ u, t }, k) => {
      fields.set([u.current.fd, t.fd, t.leased ? 1 : 0, t.flags ?? -1, t.inode.names.length], k * REPLACE_TARGET_FIELDS);
      ids[2 * k] = t.st.dev;
      ids[2 * k + 1] = t.st.ino;
      for (const m of t.inode.names) {
        dirFds.push(dirs.of(m));
        names.push(m.name);
      }
    });
    const r = native.replaceNames(fields, ids, Int32Array.from(dirFds), names, ctx.temps.prefix, ctx.temps.reserve(names.length));
    let full = -1;
    for (let k = 0, n = 0; k < work.length && full < 0; n += work[k]!.t.inode.names.length, k++) {
      const { u, t } = work[k]!;
      recordTarget(ctx, u, t, r, n, r.gone[k] === 1);
      if (t.inode.names.some((_, j) => r.outcomes[n + j] === ReplaceOutcome.Full)) full = k;
    }
    if (r.error !== null) throw r.error;
    if (full < 0) return;
    // The master reached the filesystem's link limit: this target, verified equal, takes over.
    const { u, t } = work[full]!;
    skip(ctx, 'link-limit');
    // It gains names from here on: the section must journal it and give it the flag at the end.
    add({ fd: t.fd, path: pathOf(ctx, t.inode.names[0]!) });
    u.current = t;
    u.masters.push(t);
    u.added.set(t, []);
    work = work.slice(full + 1);
  }
}

/**
 * What a section did to its units, into the index in one synchronous step
 * after the section (flags set again): run.ts commits between steps, so no
 * commit holds a directory's new stamp without the names that moved it, and
 * the stamps move in the order the sections made them.
 */
function indexUnits(ctx: LinkContext, units: Unit[]): void {
  const changed = units.flatMap((u) => u.masters.filter((m) => u.added.get(m)!.length > 0 || (m === u.current && u.gone.length > 0))
    .map((m) => ({ u, m })));
  const s = native.inodeStates(Int32Array.from(changed, ({ m }) => m.fd), false);
  for (const u of units) {
    for (const [dir, before, after] of u.restamps) ctx.index.restamp(dir, before, after);
    ctx.index.rememberReplaced(u.replaced);
  }
  changed.forEach(({ u, m }, k) => {
    const f = s.facts.subarray(4 * k, 4 * k + 4);
    ctx.index.linked({ dev: m.st.dev, ino: m.st.ino, nlink: f[0]!, ctimeSec: f[1]!, ctimeNsec: f[2]! }, isImmutable(f[3]! < 0 ? null : f[3]!),
      u.added.get(m)!, m === u.current ? u.gone : []);
    u.added.set(m, []);
  });
  for (const u of units) {
    u.restamps = [];
    u.replaced = [];
    u.gone = [];
  }
}

/**
 * Gathers units from the groups in flight and links them together, one
 * section per batch rather than per group: fewer lock and journal rounds,
 * each section still short (at most BATCH_TARGETS targets). A batch goes as
 * soon as it is full, or when no section is running and every group in
 * flight outside one is waiting for it; so while one batch is linked, the
 * groups of the next are opened and compared on the other threads.
 */
export class Linker {
  private pending: { unit: Unit; done: () => void; failed: (err: unknown) => void }[] = [];
  private pendingTargets = 0;
  private inflight = 0;
  /** Groups whose units are in the running section, if one is. */
  private linking = 0;

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
    if (this.pending.length === 0 || this.linking > 0) return;
    if (this.pendingTargets >= BATCH_TARGETS || this.pending.length >= this.inflight) {
      const batch = this.pending;
      this.pending = [];
      this.pendingTargets = 0;
      this.linking = batch.length;
      void this.flush(batch).finally(() => {
        this.linking = 0;
        this.maybeFlush();
      });
    }
  }

  private async flush(batch: Linker['pending']): Promise<void> {
    const ctx = this.ctx;
    const units = batch.map((b) => b.unit);
    // Only inodes whose flag the section may change: the masters (they gain names, and the flag) and
    // targets that are unified already (their flag must go for their names to be replaced). A target
    // without the flag only loses names and keeps no flag; journaling it would cost five calls a link.
    const entries: MutableEntry[] = units.flatMap((u) => [u.current, ...u.targets.filter((t) => isImmutable(t.flags))])
      .map((o) => ({ fd: o.fd, path: pathOf(ctx, o.inode.names[0]!) }));
    const dirs = new SectionDirs(ctx);
    try {
      await withMutableFds(entries, (add) => linkUnits(ctx, dirs, units, add));
      indexUnits(ctx, units);
    } catch (err) {
      for (const b of batch) b.failed(err);
      return;
    } finally {
      dirs.close();
      // Targets that took over as masters stay open until their group is done.
      for (const u of units) {
        release(ctx, u.targets.filter((t) => !u.masters.includes(t)).map((t) => t.fd));
        u.targets = [];
      }
      ctx.closer.flush();
    }
    for (const b of batch) b.done();
  }
}

/** One group's master and its targets through steps 1 to 5; everything is counted in ctx.counts. */
export async function linkInto(ctx: LinkContext, linker: Linker | null, g: GroupKey, masterInode: PlanInode, targets: PlanInode[]): Promise<void> {
  let unit: Unit | null = null;
  try {
    for (let i = 0; i < targets.length; i += VERIFY_CHUNK) {
      const chunk = targets.slice(i, i + VERIFY_CHUNK);
      const prepared = await prepare(ctx, g, unit?.current ?? null, masterInode, chunk);
      if (prepared.master === null) {
        skip(ctx, 'changed', targets.length);
        return;
      }
      unit ??= { g, current: prepared.master, masters: [prepared.master], added: new Map([[prepared.master, []]]), gone: [],
        targets: [], replaced: [], restamps: [] };
      unit.targets = prepared.targets;
      if (unit.targets.length === 0) continue;
      if (linker === null) {
        for (const t of unit.targets) {
          ctx.counts.linksMade += t.inode.names.length;
          ctx.counts.inodesReclaimed++;
          ctx.counts.bytesReclaimed += g.size;
        }
        release(ctx, unit.targets.map((t) => t.fd));
        unit.targets = [];
        continue;
      }
      await linker.link(unit);
    }
  } finally {
    if (unit !== null) release(ctx, [...unit.targets, ...unit.masters].map((o) => o.fd));
  }
}
