// `vefs unify` as one pipeline: lock, repair, walk (scan.ts) into the index
// (index.ts), hash what is new (hash.ts), group and plan (index.ts,
// plan.ts), verify and link (link.ts), report (report.ts). --revert walks
// and undoes instead (revert.ts). A dry run does all the reading and
// deciding, changes no file, and leaves the index as it was.
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { native, C, type NativeError } from '../../native/index.js';
import { stateDir } from '../vefs/state.js';
import { beneath, child, shown } from './bytes.js';
import { UnifyError } from './errors.js';
import { DEFAULT_EXCLUDES, excluder } from './exclude.js';
import type { GroupQueries } from './groups.js';
import type { HashCounts } from './hash.js';
import { UnifyIndex } from './index.js';
import { Closer } from './closer.js';
import type { LinkContext, LinkCounts } from './link.js';
import { takeJobLock } from './lock.js';
import { randomToken, TempNames } from './token.js';
import type { Progress, ProgressState } from './progress.js';
import { bytes, type UnifyReport } from './report.js';
import type { RevertCounts } from './revert.js';
import { closeRoots, openRoots, BENEATH, type Root } from './roots.js';
import { scanRoot, type DirVisit, type KnownDir, type Leftover, type ScanCounts } from './scan.js';
import { deferSeals, repairJournal, sectionStats, settleSeals, unsealedPath, withMutableFds } from './section.js';
import { NO_XATTRS, pathXattrs } from './xattrs.js';

export interface UnifyOptions {
  /** ROOTs and templates as byte strings (native/index.ts toBytes). */
  roots: string[];
  templates: string[];
  dryRun?: boolean;
  /** Default: $VEFS_STATE_DIR/unify.db. */
  index?: string;
  minSize?: number;
  /** Added to DEFAULT_EXCLUDES unless defaultExcludes is false. */
  exclude?: string[];
  defaultExcludes?: boolean;
  ignoreMtime?: boolean;
  revert?: boolean;
  /** Stat every file, also those the last walk found sealed in a directory unchanged since (scan.ts). */
  rescan?: boolean;
  /** Links per inode to plan for; default the filesystem's limit (ext4: 65,000). */
  linkMax?: number;
  /** Reads in flight while hashing and comparing. */
  concurrency?: number;
  /** Where to draw a progress line (a terminal), if anywhere. */
  progress?: NodeJS.WriteStream;
}

export const defaultIndexPath = (): string => join(stateDir(), 'unify.db');

// Link limits by statfs f_type; EMLINK is handled anyway, this only keeps
// the plan (and so a rerun) from running into it.
const LINK_MAX = new Map<number, number>([
  [0xef53, 65_000],        // ext2/3/4 (ext2/3 stop at 32,000: EMLINK then picks a new master)
  [0x9123683e, 65_535],    // btrfs
  [0x58465342, 2 ** 31 - 1], // xfs
  [0x01021994, 2 ** 31 - 1], // tmpfs
]);

const elapsed = (since: number): number => (performance.now() - since) / 1000;

const LEFTOVER = /^\.vefs-unify\.([0-9a-f]{16})\.\d+$/;

function openIndex(file: string, dryRun: boolean): UnifyIndex {
  // A dry run works in one transaction that is rolled back; without an index yet it works in memory.
  if (dryRun && !existsSync(file)) return new UnifyIndex(':memory:');
  mkdirSync(dirname(file), { recursive: true });
  const index = new UnifyIndex(file);
  if (dryRun) index.db.exec('BEGIN');
  return index;
}

/**
 * Tells the index which inodes sections unsealed since the last run, so
 * that the walk stats their names again. The file is taken by a rename
 * (a server may append meanwhile); a run killed before it was applied left
 * it as `.taken`, applied again next time, to the same effect. A dry run
 * reads both and consumes neither.
 */
function takeUnsealed(idx: UnifyIndex, dryRun: boolean): void {
  const file = unsealedPath();
  const taken = `${file}.taken`;
  const apply = (f: string): void => {
    if (existsSync(f)) idx.unseal(readFileSync(f, 'utf8').split('\n').filter((l) => l !== ''));
  };
  apply(taken);
  if (dryRun) return apply(file);
  if (existsSync(taken)) unlinkSync(taken);
  if (!existsSync(file)) return;
  renameSync(file, taken);
  apply(taken);
  unlinkSync(taken);
}

async function removeLeftovers(leftovers: Leftover[], dryRun: boolean): Promise<number> {
  if (dryRun) return 0;
  let removed = 0;
  for (const l of leftovers) {
    const dirfd = native.openat2(l.root.fd, beneath(l.rel), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0, BENEATH);
    try {
      const fd = native.openat(dirfd, l.name, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK, 0);
      try {
        // It may be a second name of a unified inode: removing it is a change to the inode's names.
        await withMutableFds([{ fd, path: l.root.path + child(l.rel, l.name) }], () => native.unlinkat(dirfd, l.name, 0));
        removed++;
      } finally {
        native.close(fd);
      }
    } catch (err) {
      if ((err as NativeError).code !== 'ENOENT') throw err;
    } finally {
      native.close(dirfd);
    }
  }
  return removed;
}

export async function unify(opts: UnifyOptions): Promise<UnifyReport> {
  const started = performance.now();
  const dryRun = opts.dryRun ?? false;
  const minSize = opts.minSize ?? 1;
  if (!Number.isSafeInteger(minSize) || minSize < 1) throw new UnifyError('EINVAL', `--min-size must be a whole number of bytes, at least 1`);
  if (opts.linkMax !== undefined && (!Number.isSafeInteger(opts.linkMax) || opts.linkMax < 2)) {
    throw new UnifyError('EINVAL', '--link-max must be a whole number, at least 2');
  }
  const roots = openRoots(opts.roots, opts.templates);
  let releaseJob: (() => void) | null = null;
  let index: UnifyIndex | null = null;
  let progress: Progress | null = null;
  const ignoreSigio = (): void => undefined;
  try {
    releaseJob = takeJobLock();
    // First: this process is the job now, so any deferred journal line is a dead job's (section.ts).
    deferSeals();
    repairJournal();
    index = openIndex(opts.index ?? defaultIndexPath(), dryRun);
    const idx = index;
    idx.beginRun(roots);
    takeUnsealed(idx, dryRun);
    const rootsById = new Map<number, Root>(roots.map((r) => [idx.rootId(r), r]));
    const runId = randomToken();
    idx.startRun(runId);
    const unfinished = idx.unfinishedRuns(runId);
    const temps = new TempNames(`.vefs-unify.${runId}.`);
    // Leases signal their holder when a writer wants the file; we poll instead (link.ts).
    process.on('SIGIO', ignoreSigio);

    const scanned: ScanCounts = { dirs: 0, passed: 0, files: 0, trusted: 0, bytes: 0 };
    const hashed: HashCounts = { files: 0, bytes: 0, stale: 0 };
    const linked: LinkCounts = { linksMade: 0, inodesReclaimed: 0, bytesReclaimed: 0, bytesRead: 0, skipped: {} };
    const reverted: RevertCounts = { inodes: 0, paths: 0, bytesCopied: 0 };
    const state: ProgressState = { phase: 'scanning', done: 0, total: null, detail: '' };
    let groupsDone = 0;
    let pendingBytes = 0;
    let groupsToLink = 0;
    if (opts.progress) {
      const { Progress } = await import('./progress.js');
      progress = new Progress(opts.progress, () => {
        if (state.phase === 'scanning') state.detail = `${scanned.files} files in ${scanned.dirs} directories`;
        if (state.phase === 'hashing') Object.assign(state, { done: hashed.bytes, total: pendingBytes, detail: `${hashed.files} files, ${bytes(hashed.bytes)}` });
        if (state.phase === 'linking') Object.assign(state, { done: groupsDone, total: groupsToLink, detail: `${groupsDone}/${groupsToLink} groups, ${linked.linksMade} links` });
        if (state.phase === 'reverting') state.detail = `${reverted.paths} paths`;
        return state;
      });
      progress.start();
    }

    const leftovers: Leftover[] = [];
    const isLeftover = (name: string): boolean => {
      const m = LEFTOVER.exec(name);
      return m !== null && unfinished.has(m[1]!);
    };
    // Modules that only some runs need load when a run needs them: a rerun that finds nothing changed
    // neither reverts, hashes nor links, and from cron draws no progress.
    const revert = opts.revert ? await import('./revert.js') : null;
    const revertVisit = revert?.collectShared(idx) ?? null;
    let changed = 0;
    const visit = (v: DirVisit): void => {
      idx.batch();
      if (revertVisit) revertVisit(v);
      else changed += idx.syncDir(v, (name, st) => (st.xattrs ? pathXattrs(`/proc/self/fd/${v.fd}/${name}`) : NO_XATTRS));
      idx.commitIfDue();
    };
    const patterns = opts.revert ? [] : [...(opts.defaultExcludes === false ? [] : DEFAULT_EXCLUDES), ...(opts.exclude ?? [])];
    const exclude = excluder(patterns);
    // --revert looks at every name; --rescan trusts nothing the last walk saw.
    const trusting = !opts.revert && !opts.rescan;
    const walkSig = JSON.stringify([patterns, minSize]);
    // Directories are passed unopened only after a whole walk with the same exclusions and minimum size.
    const sameWalk = trusting && idx.walkSignature() === walkSig;
    if (!sameWalk && !opts.revert) idx.setWalkSignature(null);
    try {
      const scanOpts = { exclude, minSize, isLeftover,
        recall: trusting ? (root: Root, rel: string) => idx.recall(root, rel) : undefined,
        known: sameWalk ? (root: Root) => idx.knownDirs(root) : undefined,
        passed: (d: KnownDir) => { idx.batch(); idx.passed(d); }, fileStamp: UnifyIndex.fileStamp };
      for (const root of roots) await scanRoot(root, scanOpts, visit, scanned, leftovers);
      if (!opts.revert) idx.setWalkSignature(walkSig);
    } finally {
      idx.commit();
    }
    const leftoversRemoved = await removeLeftovers(leftovers, dryRun);
    const phases: Record<string, number> = { scan: elapsed(started) };

    let groups = { groups: 0, alreadyLinked: 0 };
    if (revert) {
      state.phase = 'reverting';
      await revert.revertShared(idx, rootsById, dryRun, () => temps.next(), reverted);
      idx.dropOrphans();
    } else {
      changed += idx.pruneUnseen() + leftoversRemoved;
      // The same ROOTs and options as a run that left nothing to do, and nothing changed since: nothing to do.
      const sig = JSON.stringify([roots.map((r) => [idx.rootId(r), r.template]), opts.ignoreMtime ?? false, opts.linkMax ?? null]);
      const settled = changed === 0 ? idx.settled(sig) : null;
      if (settled !== null) groups = settled;
      else {
        idx.setSettled(null);
        state.phase = 'hashing';
        const [{ GroupQueries }, { hashPending }] = await Promise.all([import('./groups.js'), import('./hash.js')]);
        const queries = new GroupQueries(idx);
        if (opts.progress) pendingBytes = queries.pendingBytes();
        const concurrency = opts.concurrency ?? 8;
        idx.batch();
        try {
          await hashPending(idx, queries, rootsById, concurrency, hashed);
        } finally {
          idx.commit();
        }
        phases.hash = elapsed(started);
        groups = queries.build(opts.ignoreMtime ?? false);
        groupsToLink = queries.toLinkCount();
        phases.group = elapsed(started);
        state.phase = 'linking';
        const ctx: LinkContext = { index: idx, roots: rootsById, dryRun, predicate: { ignoreMtime: opts.ignoreMtime ?? false },
          counts: linked, temps, closer: new Closer(), transient: 0 };
        await linkGroups(ctx, queries, roots, opts.linkMax, () => groupsDone++);
        phases.link = elapsed(started);
        // Every planned link made and nothing left to retry: the index now describes a settled state.
        if (ctx.transient === 0 && hashed.stale === 0) idx.setSettled({ sig, ...groups, alreadyLinked: groups.alreadyLinked + linked.linksMade });
      }
    }
    await settleSeals();
    idx.finishRun(runId);
    const s = sectionStats();
    return {
      mode: opts.revert ? 'revert' : 'unify',
      dryRun,
      roots: roots.map((r) => shown(r.path)),
      templates: roots.filter((r) => r.template).map((r) => shown(r.path)),
      dirsScanned: scanned.dirs,
      dirsPassed: scanned.passed,
      filesScanned: scanned.files,
      filesTrusted: scanned.trusted,
      bytesScanned: scanned.bytes,
      filesHashed: hashed.files,
      bytesRead: hashed.bytes + linked.bytesRead,
      groups: groups.groups,
      alreadyLinked: groups.alreadyLinked,
      linksMade: linked.linksMade,
      inodesReclaimed: linked.inodesReclaimed,
      bytesReclaimed: linked.bytesReclaimed,
      skipped: linked.skipped,
      leftoversRemoved,
      reverted: opts.revert ? reverted : null,
      section: { ...s, windowMeanMs: s.sections > 0 ? s.windowTotalMs / s.sections : 0 },
      phases,
      seconds: elapsed(started),
      cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  } finally {
    progress?.stop();
    process.off('SIGIO', ignoreSigio);
    // After a failure too: the flags of the sections that ended go to disk (a failed one's stay journaled).
    await settleSeals().catch(() => undefined);
    if (index !== null) {
      if (dryRun && index.db.inTransaction) index.db.exec('ROLLBACK');
      index.close();
    }
    releaseJob?.();
    closeRoots(roots);
  }
}

/** Groups read from the index at a time. */
const PAGE_GROUPS = 256;
/** Descriptors left to close before the loop waits for the closing threads. */
const CLOSING_FDS = 512;

/**
 * Targets in flight while linking, each holding a descriptor and a lease:
 * two sections' batches, so that while one is linked on this thread the
 * next is opened and compared on the pool. Bounded in targets, not groups:
 * a new VE's groups have one target each, a first run's one per VE.
 */
class InFlight {
  private used = 0;
  private wake: (() => void) | null = null;

  constructor(private readonly limit: number) {}

  /** Waits for room for n more; a group larger than the limit goes alone. */
  async take(n: number): Promise<void> {
    while (this.used > 0 && this.used + n > this.limit) await new Promise<void>((r) => (this.wake = r));
    this.used += n;
  }

  give(n: number): void {
    this.used -= n;
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async drained(): Promise<void> {
    while (this.used > 0) await new Promise<void>((r) => (this.wake = r));
  }
}

async function linkGroups(ctx: LinkContext, queries: GroupQueries, roots: Root[], linkMaxOption: number | undefined,
  onGroup: () => void): Promise<void> {
  const [{ Linker, linkInto, BATCH_TARGETS, VERIFY_CHUNK }, { planGroup }] = await Promise.all([import('./link.js'), import('./plan.js')]);
  const linker = ctx.dryRun ? null : new Linker(ctx);
  const linkMax = new Map<bigint, number>();
  for (const r of roots) linkMax.set(r.dev, linkMaxOption ?? LINK_MAX.get(native.fstatfs(r.fd).type) ?? 65_000);
  const inFlight = new InFlight(2 * BATCH_TARGETS);
  let failure: unknown;
  // Each section writes its index updates in one synchronous step after it (link.ts indexUnits), so a
  // commit between two pages never holds half of one, and the pages follow each other without draining:
  // the next page's groups are opened and compared while the last ones are linked.
  ctx.index.batch();
  for (let after = 0; failure === undefined;) {
    const page = queries.page(after, PAGE_GROUPS);
    if (page.length === 0) break;
    after = page[page.length - 1]!.key.rowid;
    for (const { key: g, inodes } of page) {
      if (failure !== undefined) break;
      const plan = planGroup(inodes, linkMax.get(g.dev) ?? linkMaxOption ?? 65_000);
      for (const l of plan.links) for (const t of l.targets) queries.allNames(g.dev, t);
      if (plan.elsewhere.length > 0) ctx.counts.skipped['names-elsewhere'] = (ctx.counts.skipped['names-elsewhere'] ?? 0) + plan.elsewhere.length;
      // A group holds at most a chunk of its targets open at a time (link.ts).
      const held = plan.links.reduce((n, l) => n + Math.min(l.targets.length, VERIFY_CHUNK), 0);
      await inFlight.take(held);
      linker?.enter();
      void (async () => {
        try {
          for (const l of plan.links) await linkInto(ctx, linker, g, l.master, l.targets);
        } catch (err) {
          failure ??= err;
        } finally {
          linker?.leave();
          inFlight.give(held);
          onGroup();
        }
      })();
    }
    ctx.index.commitIfDue();
    ctx.closer.flush();
    if (ctx.closer.backlog > CLOSING_FDS) await ctx.closer.drained(CLOSING_FDS / 2);
  }
  await inFlight.drained();
  await ctx.closer.drained();
  ctx.index.commit();
  if (failure !== undefined) throw failure;
}
