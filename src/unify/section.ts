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
//     the inodes that `paths` name now (a missing path is skipped), writes the
//     journal ($VEFS_STATE_DIR/unify-section.journal, empty between sections:
//     path, dev, ino, file handle, flag and link count of each), clears
//     FS_IMMUTABLE_FL on those that have it, runs fn, and then sets the flag
//     on every one of those inodes that is (still) unified:
//       - it had the flag and still has more than one name, or kept as many
//         names as it had (a unified inode that a VE's copy-on-write or unlink
//         left with a single name is no longer shared, and stays writable);
//       - or it did not have the flag and gained names during the section
//         (unify linking a new name to it), and now has more than one.
//     Then it empties the journal and releases the lock, also when fn throws
//     (fn's error is rethrown; a flag that cannot be set again throws and
//     leaves the journal for the next repair). Resolves to fn's result.
//
//   withMutableFds<T>(entries: { fd: number; path: string }[], fn): Promise<T>
//     The same on descriptors the caller opened (unify opens below a ROOT
//     with openat2, safe from symlinks); path only goes into the journal.
//     fn is handed add(entry): an inode that turns out to need the rule
//     inside the section (unify: a target that becomes a master on EMLINK)
//     is journaled then, before fn changes its names.
//
//   repairJournal(): void
//     For a server's start-up: if a journal is left and no one holds the
//     lock, the holder died inside a section; each journaled inode is reached
//     by its file handle (its names may have changed) and given the flag by
//     the rule above. Synchronous and never waits: when the lock is held, the
//     holder is alive and finishes its own section (and should it die, the
//     next section repairs first).
//
// The window: an inode is without its flag from the clear to the set, which
// is fn's duration plus a few ioctls. unify's fn is one linkat+rename per
// name for a batch of at most 256 target inodes (adding a Debian minbase VE
// to 8 unified ones: 21 sections, mean 36 ms, longest 57 ms, at load 20);
// sectionStats() reports the longest
// and mean window and lock hold of this process (`vefs unify --json`:
// section.*). While the flag is off, a
// process could open the inode for writing: unify holds a read lease on
// every inode it links (link.ts), and VEFS never writes a unified inode (it
// copies it first).
//
// Durability, for a power loss as well as kill -9: the journal reaches the
// disk (fdatasync; its directory fsynced once, when the file is created)
// before any flag is cleared, and every flag the section sets reaches the
// disk (fsync of the inode) before the journal is emptied. So whatever part
// of a section the disk kept, a flag that may be missing is in a journal on
// disk, and the next section or repairJournal() puts it back (the repair
// too syncs the flags before emptying the journal). Emptying needs no sync:
// a journal that comes back after a power loss is only repaired once more,
// and the rule gives the same answer. Cost per section: one fdatasync of
// the journal, then an fsync of each inode that gets its flag back (unify
// seals up to 256 masters at once), in parallel on the thread pool while the
// event loop goes on; the lock is held meanwhile. sectionStats().syncMs;
// per link in the README.
//
// Test hook: VEFS_TEST_SECTION_KILL=N kills this process with SIGKILL in its
// Nth section, after fn and before the flags are set again.
import { closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, writeSync,
  constants as fsc } from 'node:fs';
import { dirname, join } from 'node:path';
import { native, C, type NativeError } from '../../native/index.js';
import { stateDir } from '../vefs/state.js';
import { inodeFlags, isImmutable, setImmutable } from './flags.js';

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
  handle: string | null;
  flagged: boolean;
  nlink: number;
}

export interface SectionStats {
  sections: number;
  windowMaxMs: number;
  windowTotalMs: number;
  heldMaxMs: number;
  /** Time spent making the journal and the flags durable (fdatasync, fsync). */
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

function handleOf(fd: number): string | null {
  try {
    return native.nameToHandleAt(fd, '', C.AT_EMPTY_PATH).handle.toString('hex');
  } catch {
    return null; // no handles on this filesystem: the repair falls back to the path
  }
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

// The journal stays open and is rewritten in place: a pwrite to start a
// section, a truncate to end it. A kill during the write leaves a journal
// that does not parse, but then no flag was cleared yet: nothing to repair.
let journalFd: { path: string; fd: number } | null = null;

/** Makes what was written to fd durable; the time counts as the section's sync cost. */
function durable(fd: number, sync: (fd: number) => void): void {
  const t = now();
  sync(fd);
  stats.syncMs += now() - t;
}

function journal(): number {
  const path = journalPath();
  if (journalFd?.path !== path) {
    if (journalFd) closeSync(journalFd.fd);
    mkdirSync(stateDir(), { recursive: true });
    const created = !existsSync(path);
    journalFd = { path, fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600) };
    // A journal whose name a power loss takes away repairs nothing: the new name goes to disk too.
    if (created) {
      const dir = openSync(dirname(path), fsc.O_RDONLY | fsc.O_DIRECTORY);
      try {
        durable(dir, fsyncSync);
      } finally {
        closeSync(dir);
      }
    }
  }
  return journalFd.fd;
}

/** Written and on disk before any flag of its inodes is cleared. */
function writeJournal(entries: JournalEntry[]): void {
  const fd = journal();
  const text = JSON.stringify({ pid: process.pid, entries });
  writeSync(fd, text, 0);
  // A longer journal written earlier in this section (add) must not leave its tail behind.
  ftruncateSync(fd, Buffer.byteLength(text));
  durable(fd, fdatasyncSync);
}

/** Sets the flag and puts it on disk: the journal that covers it may be emptied after this. */
function seal(fd: number): void {
  setImmutable(fd, true);
  durable(fd, fsyncSync);
}

/**
 * Puts the flags set on these inodes on disk: an fsync each, in parallel on
 * the thread pool while the event loop goes on. (One syncfs per section was
 * no cheaper here, and it also writes whatever else other processes left
 * dirty on the filesystem.)
 */
async function sealed(fds: number[]): Promise<void> {
  const t = now();
  await Promise.all(fds.map((fd) => native.fsync(fd)));
  stats.syncMs += now() - t;
}

const endJournal = (): void => ftruncateSync(journal(), 0);

let sectionCount = 0;

/** Adds an inode to the running section: journaled (on disk) before its flag is cleared. */
export type AddToSection = (entry: MutableEntry) => void;

/** withMutable on descriptors the caller opened (unify opens below its ROOTs, safe from symlinks). */
export async function withMutableFds<T>(entries: MutableEntry[], fn: (add: AddToSection) => Promise<T> | T): Promise<T> {
  return underHostLock(async () => {
    repairLocked();
    const inodes = new Map<string, { fd: number; flagged: boolean; nlink: number }>();
    const journaled: JournalEntry[] = [];
    /** Answers whether the inode is new to the section and has the flag (to be cleared once journaled). */
    const enter = (e: MutableEntry): { added: boolean; flagged: boolean } => {
      const st = native.fstat(e.fd);
      const key = `${st.dev}:${st.ino}`;
      if (inodes.has(key)) return { added: false, flagged: false };
      const flagged = isImmutable(inodeFlags(e.fd));
      inodes.set(key, { fd: e.fd, flagged, nlink: st.nlink });
      journaled.push({ path: e.path, dev: String(st.dev), ino: String(st.ino), handle: handleOf(e.fd), flagged, nlink: st.nlink });
      return { added: true, flagged };
    };
    for (const e of entries) enter(e);
    writeJournal(journaled);
    const cleared = now();
    let failed: unknown;
    const add: AddToSection = (e) => {
      const { added, flagged } = enter(e);
      if (!added) return;
      writeJournal(journaled);
      if (flagged) setImmutable(e.fd, false);
    };
    try {
      for (const i of inodes.values()) if (i.flagged) setImmutable(i.fd, false);
      return await fn(add);
    } finally {
      if (++sectionCount === Number(process.env.VEFS_TEST_SECTION_KILL)) process.kill(process.pid, 'SIGKILL');
      const flagged: number[] = [];
      for (const i of inodes.values()) {
        try {
          if (keepsFlag(i.flagged, i.nlink, native.fstat(i.fd).nlink)) {
            setImmutable(i.fd, true);
            flagged.push(i.fd);
          }
        } catch (err) {
          failed ??= err;
        }
      }
      const window = now() - cleared;
      await sealed(flagged).catch((err: unknown) => { failed ??= err; });
      stats.sections++;
      stats.windowTotalMs += window;
      stats.windowMaxMs = Math.max(stats.windowMaxMs, window);
      // A flag that could not be set again stays in the journal for the next repair.
      if (failed === undefined) endJournal();
      else throw failed;
    }
  });
}

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

function repairLocked(): void {
  const text = readFileSync(journal(), 'utf8');
  if (text === '') return;
  let entries: JournalEntry[] = [];
  try {
    entries = (JSON.parse(text) as { entries: JournalEntry[] }).entries;
  } catch {
    // Cut short while being written, before any flag was cleared: nothing to repair.
  }
  for (const e of entries) {
    const fd = reopen(e);
    if (fd === null) continue;
    try {
      if (keepsFlag(e.flagged, e.nlink, native.fstat(fd).nlink)) seal(fd);
    } finally {
      native.close(fd);
    }
  }
  endJournal();
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
