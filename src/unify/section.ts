// The mutable section: the one place where a unified inode loses its
// immutable flag, shared by `vefs unify` and the VEFS server.
//
// Why: unified inodes carry FS_IMMUTABLE_FL, and on mainline ext4 that flag
// also refuses link(), unlink() and rename() over any name of the inode, to
// root too. So every change to a unified inode's names (unify adding a name,
// a VE's copy-on-write or unlink through VEFS, --revert) clears the flag,
// acts, and sets it again, inside one short section under a host-wide lock,
// with a journal so that a crash inside the section is repaired.
//
// API (paths are byte strings, as in native/index.ts; absolute, and free of
// symlinks the caller did not mean: the final name is opened O_NOFOLLOW):
//
//   withMutable<T>(paths: string[], fn: () => Promise<T> | T): Promise<T>
//     Takes the host lock ($VEFS_STATE_DIR/unify-section.lock, flock; waiting
//     happens on the thread pool, never on the event loop; callers in one
//     process queue in order), repairs a journal a dead holder left, opens
//     the inodes that `paths` name now (a missing path is skipped), appends a
//     line to the journal ($VEFS_STATE_DIR/unify-section.journal: path, dev,
//     ino, file handle, flag and link count of each), clears
//     FS_IMMUTABLE_FL on those that have it, runs fn, and then sets the flag
//     on every one of those inodes that is (still) unified:
//       - it had the flag and still has more than one name, or kept as many
//         names as it had (a unified inode that a VE's copy-on-write or unlink
//         left with a single name is no longer shared, and stays writable);
//       - or it did not have the flag and gained names during the section
//         (unify linking a new name to it), and now has more than one.
//     Then it removes its line (unless deferring, below) and releases the
//     lock, also when fn throws (fn's error is rethrown; a flag that cannot
//     be set again throws and leaves the line for the next repair). Resolves
//     to fn's result.
//
//   withMutableFds<T>(entries: { fd: number; path: string }[], fn): Promise<T>
//     The same on descriptors the caller opened (unify opens below a ROOT
//     with openat2, safe from symlinks); path only goes into the journal.
//     fn is handed add(entry): an inode that turns out to need the rule
//     inside the section (unify: a target that becomes a master on EMLINK)
//     is journaled then, before fn changes its names.
//
//   deferSeals(): void; settleSeals(): Promise<void>
//     For unify, holding its job lock: sections leave their lines and skip
//     their fsyncs until settleSeals() (see Durability).
//
//   repairJournal(): void
//     For a server's start-up: if a journal is left and no one holds the
//     lock, the holder died inside a section (or a unify job died between
//     its sections, with seals deferred); each journaled inode is reached
//     by its file handle (its names may have changed) and given the flag by
//     the rule above. Synchronous and never waits: when the lock is held, the
//     holder is alive and finishes its own section (and should it die, the
//     next section repairs first).
//
// The window: an inode is without its flag from the clear to the set, which
// is fn's duration plus a few ioctls. unify's fn is one linkat+rename per
// name for a batch of at most 512 target inodes, in one addon call (adding a
// Debian minbase VE to 8 unified ones: 21 sections, mean 17 ms, longest 42
// ms; a full run of 8 such trees: about 75 sections, mean 30-36 ms, longest
// 48-56 ms; load 2); sectionStats() reports the longest and mean window and
// lock hold of this process (`vefs unify --json`: section.*). While the flag
// is off, a process could open the inode for writing: unify holds a read
// lease on every inode it links (link.ts), and VEFS never writes a unified
// inode (it copies it first).
//
// Durability, for a power loss as well as kill -9: the journal reaches the
// disk (fdatasync; its directory fsynced once, when the file is created)
// before any flag is cleared, and a journal line is removed only once
// every flag its section set is on disk. So whatever part of a section the
// disk kept, a flag that may be missing is in a journal on disk, and the
// next section or repairJournal() puts it back. Emptying needs no sync: a
// journal that comes back after a power loss is only repaired once more, and
// the rule gives the same answer.
//
// The journal is a file of lines, one per section (and one per inode a
// section adds), each tagged with its writer. A caller's section removes its
// own lines when it ends, after an fsync of each inode it sealed (the VEFS
// server: one or two inodes). unify instead defers (deferSeals): its lines
// stay, marked deferred, and one syncfs per filesystem at the end of the run
// (settleSeals), or when the journal passes SETTLE_BYTES, makes all the
// flags durable before the journal is emptied. An fsync per sealed inode
// per section cost a full Debian run 1.8 s of its 8.8 s, and adding a VE
// 0.8 s of 3.5 s. Deferred lines of a live unify (its job lock is held) are
// left alone by other processes' repairs; once the job lock is free, they
// are a dead job's and repaired like any other.
//
// Test hook: VEFS_TEST_SECTION_KILL=N kills this process with SIGKILL in its
// Nth section, after fn and before the flags are set again.
import { appendFileSync, closeSync, existsSync, fdatasync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync,
  writeSync, constants as fsc } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { native, C, type NativeError } from '../../native/index.js';
import { stateDir } from '../vefs/state.js';
import { setImmutable } from './flags.js';
import { jobRunning } from './lock.js';
import { randomToken } from './token.js';

export interface MutableEntry {
  /** An open descriptor of the inode (any access mode); the caller keeps it. */
  fd: number;
  /** A name of it, for the journal and for people. */
  path: string;
}

interface JournalEntry {
  path: string;
  dev: string;
  ino: string;
  /** null: no handles on this filesystem; the repair falls back to the path. */
  handle: string | null;
  flagged: boolean;
  nlink: number;
}

/** One line of the journal. */
interface JournalLine {
  /** Whose: a token per process (a pid may come back after a crash). */
  holder: string;
  /** Left in place after its section, until settleSeals() (unify). */
  deferred: boolean;
  entries: JournalEntry[];
}

export interface SectionStats {
  sections: number;
  windowMaxMs: number;
  windowTotalMs: number;
  heldMaxMs: number;
  /** Time spent making the journal and the flags durable (fdatasync, fsync, syncfs). */
  syncMs: number;
}

const stats: SectionStats = { sections: 0, windowMaxMs: 0, windowTotalMs: 0, heldMaxMs: 0, syncMs: 0 };
export const sectionStats = (): SectionStats => ({ ...stats });

const lockPath = (): string => join(stateDir(), 'unify-section.lock');
const journalPath = (): string => join(stateDir(), 'unify-section.journal');

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** The flag rule of the header, shared by the section and the repair. */
export function keepsFlag(flagged: boolean, before: number, after: number): boolean {
  return flagged ? after > 1 || (after === before && after > 0) : after > before && after > 1;
}

// In-process queue in front of the flock: one description per process takes
// the host lock at a time, so waiting costs at most one pool thread.
let queue: Promise<void> = Promise.resolve();
let lockFd: { path: string; fd: number } | null = null;
// flock is per open description: a repair from this process must not take
// (or release) the lock that one of its own sections holds.
let holding = false;

function openLock(): number {
  const path = lockPath();
  if (lockFd?.path !== path) {
    if (lockFd) closeSync(lockFd.fd);
    mkdirSync(stateDir(), { recursive: true });
    lockFd = { path, fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600) };
  }
  return lockFd.fd;
}

async function underHostLock<T>(fn: () => Promise<T>): Promise<T> {
  const previous = queue;
  let release!: () => void;
  queue = new Promise((r) => { release = r; });
  await previous;
  try {
    const fd = openLock();
    try {
      native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
    } catch (err) {
      if ((err as NativeError).code !== 'EAGAIN') throw err;
      await native.flock(fd, C.LOCK_EX);
    }
    const taken = now();
    holding = true;
    try {
      return await fn();
    } finally {
      holding = false;
      stats.heldMaxMs = Math.max(stats.heldMaxMs, now() - taken);
      native.flockSync(fd, C.LOCK_UN);
    }
  } finally {
    release();
  }
}

// The journal stays open and is appended to with pwrite, and cut back with
// ftruncate. A kill during a write leaves a last line that does not parse,
// but then that section had cleared no flag yet: nothing to repair. `size`
// is what this process left it at. For the unify job, past its first repair,
// the journal holds only its own lines (other writers cut theirs back): while
// the size is what it left, a section need not read its megabytes again.
// Others must read: a job's lines turn dead when it ends, at the same size.
let journalFd: { path: string; fd: number; size: number } | null = null;

/** Makes what was written to fd durable; the time counts as the section's sync cost. */
function durable(sync: () => void): void {
  const t = now();
  sync();
  stats.syncMs += now() - t;
}

/** durable() for syncs on the thread pool. */
async function durableAsync(sync: () => Promise<unknown>): Promise<void> {
  const t = now();
  await sync();
  stats.syncMs += now() - t;
}

function journal(): number {
  const path = journalPath();
  if (journalFd?.path !== path) {
    if (journalFd) closeSync(journalFd.fd);
    mkdirSync(stateDir(), { recursive: true });
    const created = !existsSync(path);
    journalFd = { path, fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600), size: -1 };
    // A journal whose name a power loss takes away repairs nothing: the new name goes to disk too.
    if (created) {
      const dir = openSync(dirname(path), fsc.O_RDONLY | fsc.O_DIRECTORY);
      try {
        durable(() => fsyncSync(dir));
      } finally {
        closeSync(dir);
      }
    }
  }
  return journalFd.fd;
}

const journalSize = (): number => fstatSync(journal()).size;

/** Appended, not yet on disk (syncJournal); answers where it starts. */
function writeJournal(line: JournalLine): number {
  const fd = journal();
  const at = journalSize();
  const text = `${JSON.stringify(line)}\n`;
  writeSync(fd, text, at);
  journalFd!.size = at + Buffer.byteLength(text);
  return at;
}

const fdatasyncAsync = promisify(fdatasync);

/**
 * Puts what was written to the journal on disk, on the thread pool: on an
 * ext4 with a journal each fdatasync waits ~10 ms for its commit, and a
 * full run has ~80 sections; the event loop goes on meanwhile (unify: with
 * the next groups' preparations). Before any flag of its inodes is cleared.
 */
const syncJournal = (): Promise<void> => durableAsync(() => fdatasyncAsync(journal()));

/** Cuts the journal back to `length` bytes; no sync needed (see the header). */
function cutJournal(length: number): void {
  ftruncateSync(journal(), length);
  journalFd!.size = length;
}

// This process's token in the journal. A section that failed leaves its
// lines behind under the old token (a new one is drawn), so that this
// process's next section repairs them as a dead holder's.
let holder = randomToken();
let deferring = false;
/** A descriptor on each filesystem with deferred seals, for syncfs. */
const deferredFs = new Map<string, number>();
/** The journal's size past which a deferred section settles (syncfs) before it ends: ~30,000 inodes. */
const SETTLE_BYTES = 8 << 20;

/** From now on this process's sections leave their flags to settleSeals() (unify, holding its job lock). */
export function deferSeals(): void {
  deferring = true;
}

function syncDeferred(): void {
  durable(() => {
    for (const fd of deferredFs.values()) native.syncfs(fd);
  });
  for (const fd of deferredFs.values()) native.close(fd);
  deferredFs.clear();
}

/**
 * Puts every flag this process's sections set on disk (one syncfs per
 * filesystem, outside the host lock: it may take a while on a busy host) and
 * empties the journal. The end of a unify run; nothing to do without deferSeals().
 */
export async function settleSeals(): Promise<void> {
  if (!deferring) return;
  deferring = false;
  syncDeferred();
  await underHostLock(async () => {
    // Only this process's lines, and dead holders' that the repair just handled, can be left.
    repairLocked();
    cutJournal(0);
  });
}

/**
 * Inodes whose flag a section dropped for good (their last other name went:
 * a VE's copy-on-write or unlink), as dev:ino lines for the next unify run
 * (takeUnsealed): its index marked them sealed, and a walk trusts a sealed
 * name while its directory is unchanged, but this one's content may now
 * change in place. Losing the file only costs a missed link (every link
 * re-checks the live file), so it is not synced.
 */
export const unsealedPath = (): string => join(stateDir(), 'unify-unsealed');

function noteUnsealed(keys: string[]): void {
  if (keys.length === 0) return;
  mkdirSync(stateDir(), { recursive: true });
  appendFileSync(unsealedPath(), keys.map((k) => `${k}\n`).join(''), { mode: 0o600 });
}

let sectionCount = 0;

/** Adds an inode to the running section: journaled (on disk) before its flag is cleared. */
export type AddToSection = (entry: MutableEntry) => void;

/** withMutable on descriptors the caller opened (unify opens below its ROOTs, safe from symlinks). */
export async function withMutableFds<T>(entries: MutableEntry[], fn: (add: AddToSection) => Promise<T> | T): Promise<T> {
  return underHostLock(async () => {
    repairLocked();
    const inodes = new Map<string, { fd: number; flagged: boolean; nlink: number; flags: number }>();
    /** Journal entries of the inodes new to the section (one addon call for all: a section opens hundreds). */
    const enter = (list: MutableEntry[]): JournalEntry[] => {
      const s = native.inodeStates(Int32Array.from(list, (e) => e.fd), true);
      const journaled: JournalEntry[] = [];
      list.forEach((e, k) => {
        const dev = String(s.ids[2 * k]);
        const ino = String(s.ids[2 * k + 1]);
        const key = `${dev}:${ino}`;
        if (inodes.has(key)) return;
        const flags = s.facts[4 * k + 3]!;
        const flagged = flags >= 0 && (flags & C.FS_IMMUTABLE_FL) !== 0;
        const nlink = s.facts[4 * k]!;
        inodes.set(key, { fd: e.fd, flagged, nlink, flags });
        if (deferring && !deferredFs.has(dev)) deferredFs.set(dev, native.openat(C.AT_FDCWD, `/proc/self/fd/${e.fd}`, C.O_RDONLY | C.O_NONBLOCK, 0));
        journaled.push({ path: e.path, dev, ino, handle: s.handles![k]!, flagged, nlink });
      });
      return journaled;
    };
    const line = (entries: JournalEntry[]): JournalLine => ({ holder, deferred: deferring, entries });
    /** Clears the flag of the journaled inodes that have it. */
    const open = (entries: JournalEntry[]): void => {
      const flagged = entries.filter((j) => j.flagged).map((j) => inodes.get(`${j.dev}:${j.ino}`)!);
      const err = native.setflagsEach(Int32Array.from(flagged, (i) => i.fd), Float64Array.from(flagged, (i) => (i.flags & ~C.FS_IMMUTABLE_FL) >>> 0));
      if (err !== null) throw err;
    };
    const first = enter(entries);
    const start = writeJournal(line(first));
    try {
      await syncJournal();
    } catch (err) {
      // No flag was cleared: the line goes.
      cutJournal(start);
      throw err;
    }
    const cleared = now();
    let failed: unknown;
    const add: AddToSection = (e) => {
      const entry = enter([e]);
      if (entry.length === 0) return;
      // Rare (unify: a master full at the link limit) and inside fn, which is synchronous.
      writeJournal(line(entry));
      durable(() => fdatasyncSync(journal()));
      open(entry);
    };
    try {
      open(first);
      return await fn(add);
    } finally {
      if (++sectionCount === Number(process.env.VEFS_TEST_SECTION_KILL)) process.kill(process.pid, 'SIGKILL');
      const flagged: number[] = [];
      const unsealed: string[] = [];
      const list = [...inodes];
      try {
        const s = native.inodeStates(Int32Array.from(list, ([, i]) => i.fd), false);
        const want = new Float64Array(list.length).fill(-1);
        list.forEach(([key, i], k) => {
          const flags = s.facts[4 * k + 3]!;
          if (keepsFlag(i.flagged, i.nlink, s.facts[4 * k]!)) {
            flagged.push(i.fd);
            if (flags >= 0 && (flags & C.FS_IMMUTABLE_FL) === 0) want[k] = (flags | C.FS_IMMUTABLE_FL) >>> 0;
          } else if (i.flagged) unsealed.push(key);
        });
        failed = native.setflagsEach(Int32Array.from(list, ([, i]) => i.fd), want) ?? undefined;
      } catch (err) {
        failed = err;
      }
      noteUnsealed(unsealed);
      const window = now() - cleared;
      if (!deferring) await sealed(flagged).catch((err: unknown) => { failed ??= err; });
      stats.sections++;
      stats.windowTotalMs += window;
      stats.windowMaxMs = Math.max(stats.windowMaxMs, window);
      // A flag that could not be set again stays in the journal for the next repair.
      if (failed !== undefined) {
        holder = randomToken();
        throw failed;
      }
      if (!deferring) cutJournal(start);
      else if (journalSize() > SETTLE_BYTES) {
        syncDeferred();
        cutJournal(0);
      }
    }
  });
}

/**
 * Puts the flags set on these inodes on disk: an fsync each, in parallel on
 * the thread pool while the event loop goes on.
 */
const sealed = (fds: number[]): Promise<void> => durableAsync(() => Promise.all(fds.map((fd) => native.fsync(fd))));

/** Read-only, never following a final symlink, never blocking on a FIFO; O_NOATIME where allowed (owner or CAP_FOWNER). */
function openInode(path: string): number {
  const flags = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
  try {
    return native.openat(C.AT_FDCWD, path, flags | C.O_NOATIME, 0);
  } catch (err) {
    if ((err as NativeError).code !== 'EPERM') throw err;
    return native.openat(C.AT_FDCWD, path, flags, 0);
  }
}

export async function withMutable<T>(paths: string[], fn: () => Promise<T> | T): Promise<T> {
  const entries: MutableEntry[] = [];
  try {
    for (const path of paths) {
      try {
        entries.push({ path, fd: openInode(path) });
      } catch (err) {
        if ((err as NativeError).code !== 'ENOENT') throw err;
      }
    }
    return await withMutableFds(entries, fn);
  } finally {
    for (const e of entries) native.close(e.fd);
  }
}

/** Opens a journaled inode: by its handle, through any directory of its filesystem, else by its path. */
function reopen(e: JournalEntry): number | null {
  if (e.handle !== null) {
    for (let dir = dirname(e.path); ; dir = dirname(dir)) {
      let mount: number | null = null;
      try {
        mount = native.openat(C.AT_FDCWD, dir, C.O_PATH | C.O_DIRECTORY, 0);
        if (String(native.fstat(mount).dev) === e.dev) {
          return native.openByHandleAt(mount, Buffer.from(e.handle, 'hex'), C.O_RDONLY | C.O_NONBLOCK | C.O_NOATIME);
        }
      } catch (err) {
        // The inode is gone (ESTALE), or this directory is: try its parent.
        if ((err as NativeError).code === 'ESTALE') return null;
      } finally {
        if (mount !== null) native.close(mount);
      }
      if (dir === '/') break;
    }
  }
  try {
    const fd = openInode(e.path);
    const st = native.fstat(fd);
    if (String(st.dev) === e.dev && String(st.ino) === e.ino) return fd;
    native.close(fd);
  } catch {
    // the path names nothing we journaled
  }
  return null;
}

function parseLines(text: string): JournalLine[] {
  const lines: JournalLine[] = [];
  for (const l of text.split('\n')) {
    try {
      if (l !== '') lines.push(JSON.parse(l) as JournalLine);
    } catch {
      // Cut short while being written, before its section cleared any flag: nothing to repair.
    }
  }
  return lines;
}

/**
 * Under the host lock: gives the flags back by the rule to every inode in a
 * dead holder's lines, puts them on disk (one syncfs per filesystem), and
 * keeps only the lines of live holders: this process's, and a running unify's
 * deferred ones.
 */
function repairLocked(): void {
  const size = journalSize();
  if (size === 0 || (deferring && size === journalFd!.size)) return;
  // By name: reading through the shared descriptor would start where the last read ended.
  const lines = parseLines(readFileSync(journalPath(), 'utf8'));
  // Only one unify runs at a time: a deferring process is that job, so any other deferred line is a dead one's.
  const jobElsewhere = !deferring && lines.some((l) => l.deferred && l.holder !== holder) && jobRunning();
  const live = (l: JournalLine): boolean => l.holder === holder || (l.deferred && jobElsewhere);
  const dead = lines.filter((l) => !live(l));
  if (dead.length === 0) return;
  const perFs = new Map<string, number>();
  try {
    for (const e of dead.flatMap((l) => l.entries)) {
      const fd = reopen(e);
      if (fd === null) continue;
      let kept = false;
      try {
        if (keepsFlag(e.flagged, e.nlink, native.fstat(fd).nlink)) setImmutable(fd, true);
        else if (e.flagged) noteUnsealed([`${e.dev}:${e.ino}`]);
        if (!perFs.has(e.dev)) {
          perFs.set(e.dev, fd);
          kept = true;
        }
      } finally {
        if (!kept) native.close(fd);
      }
    }
    durable(() => {
      for (const fd of perFs.values()) native.syncfs(fd);
    });
  } finally {
    for (const fd of perFs.values()) native.close(fd);
  }
  const text = lines.filter(live).map((l) => `${JSON.stringify(l)}\n`).join('');
  const fd = journal();
  if (text !== '') {
    writeSync(fd, text, 0);
    durable(() => fdatasyncSync(fd));
  }
  cutJournal(Buffer.byteLength(text));
}

export function repairJournal(): void {
  if (holding || !(statSync(journalPath(), { throwIfNoEntry: false })?.size)) return;
  const fd = openLock();
  try {
    native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
  } catch (err) {
    if ((err as NativeError).code === 'EAGAIN') return;
    throw err;
  }
  try {
    repairLocked();
  } finally {
    native.flockSync(fd, C.LOCK_UN);
  }
}
