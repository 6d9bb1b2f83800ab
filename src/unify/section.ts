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
// name for a batch of at most 64 target inodes (mean 3 ms, longest 12 ms on
// the README's corpus on a busy host); sectionStats() reports the longest
// and mean window and lock hold of this process (`vefs unify --json`:
// section.*). While the flag is off, a
// process could open the inode for writing: unify holds a read lease on
// every inode it links (link.ts), and VEFS never writes a unified inode (it
// copies it first).
//
// Durability: the journal is not fsynced. kill -9 at any point is repaired;
// after a power loss the flag of an inode that was being changed may be
// missing.
//
// Test hook: VEFS_TEST_SECTION_KILL=N kills this process with SIGKILL in its
// Nth section, after fn and before the flags are set again.
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, writeSync, constants as fsc } from 'node:fs';
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
}

const stats: SectionStats = { sections: 0, windowMaxMs: 0, windowTotalMs: 0, heldMaxMs: 0 };
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

function journal(): number {
  const path = journalPath();
  if (journalFd?.path !== path) {
    if (journalFd) closeSync(journalFd.fd);
    mkdirSync(stateDir(), { recursive: true });
    journalFd = { path, fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT, 0o600) };
  }
  return journalFd.fd;
}

function writeJournal(entries: JournalEntry[]): void {
  writeSync(journal(), JSON.stringify({ pid: process.pid, entries }), 0);
}

const endJournal = (): void => ftruncateSync(journal(), 0);

let sectionCount = 0;

/** withMutable on descriptors the caller opened (unify opens below its ROOTs, safe from symlinks). */
export async function withMutableFds<T>(entries: MutableEntry[], fn: () => Promise<T> | T): Promise<T> {
  return underHostLock(async () => {
    repairLocked();
    const inodes = new Map<string, { fd: number; path: string; flagged: boolean; nlink: number }>();
    for (const e of entries) {
      const st = native.fstat(e.fd);
      const key = `${st.dev}:${st.ino}`;
      if (inodes.has(key)) continue;
      inodes.set(key, { fd: e.fd, path: e.path, flagged: isImmutable(inodeFlags(e.fd)), nlink: st.nlink });
    }
    const journal: JournalEntry[] = [...inodes].map(([key, i]) => {
      const [dev, ino] = key.split(':') as [string, string];
      return { path: i.path, dev, ino, handle: handleOf(i.fd), flagged: i.flagged, nlink: i.nlink };
    });
    writeJournal(journal);
    const cleared = now();
    let failed: unknown;
    try {
      for (const i of inodes.values()) if (i.flagged) setImmutable(i.fd, false);
      return await fn();
    } finally {
      if (++sectionCount === Number(process.env.VEFS_TEST_SECTION_KILL)) process.kill(process.pid, 'SIGKILL');
      for (const i of inodes.values()) {
        try {
          if (keepsFlag(i.flagged, i.nlink, native.fstat(i.fd).nlink)) setImmutable(i.fd, true);
        } catch (err) {
          failed ??= err;
        }
      }
      const window = now() - cleared;
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
      if (keepsFlag(e.flagged, e.nlink, native.fstat(fd).nlink)) setImmutable(fd, true);
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
