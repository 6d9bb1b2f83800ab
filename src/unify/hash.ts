// Step 3: hash the files that need it, XXH128 over the whole content, with a
// bounded number of reads in flight (p-queue): on a cold cache parallel reads
// keep the disk busy, and the bound keeps memory to one buffer per read.
// Files come from the index in pages, so millions of them are never in
// memory at once. A file is read only if it is still the version the walk
// saw (dev, ino, size, mtime); otherwise it waits for the next run.
import PQueue from 'p-queue';
import xxhash from 'xxhash-addon';
import { native, C, type NativeError } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import { CHUNK, giveBuffer, readAt, SYNC_MAX, takeBuffer } from './io.js';
import type { GroupQueries, PendingFile } from './groups.js';
import type { UnifyIndex } from './index.js';
import { BENEATH, type Root } from './roots.js';

const SEED = Buffer.alloc(4);
const PAGE = 2048;

type Hasher = InstanceType<typeof xxhash.XXHash128>;

// A hasher holds native memory that V8 does not see; one per file would
// pile up tens of megabytes between collections. They are reused instead.
const hashers: Hasher[] = [];

/** Runs fn with a fresh XXH128 state and answers its digest. */
export function withHasher(fn: (h: Hasher) => Promise<boolean>): Promise<Buffer | null>;
export function withHasher(fn: (h: Hasher) => void): Buffer;
export function withHasher(fn: (h: Hasher) => void | Promise<boolean>): Buffer | Promise<Buffer | null> {
  const h = hashers.pop() ?? new xxhash.XXHash128(SEED);
  h.reset();
  const done = (): Buffer => {
    const digest = h.digest();
    hashers.push(h);
    return digest;
  };
  const r = fn(h);
  if (r === undefined) return done();
  return r.then((ok) => {
    if (ok) return done();
    hashers.push(h);
    return null;
  }, (err: unknown) => {
    hashers.push(h);
    throw err;
  });
}

export interface HashCounts {
  files: number;
  bytes: number;
  /** Changed or gone since the walk; left for the next run. */
  stale: number;
}

/** Opens a file below its ROOT for reading, without following symlinks or touching its atime. */
export function openBeneath(root: Root, rel: string, name: string): number {
  return native.openat2(root.fd, beneath(child(rel, name)),
    C.O_RDONLY | C.O_NOFOLLOW | C.O_NOATIME | C.O_NONBLOCK, 0, BENEATH);
}

function hashFd(fd: number, size: number, buf: Buffer, counts: HashCounts): Promise<Buffer | null> {
  return withHasher(async (h) => {
    for (let pos = 0; pos < size;) {
      const bytesRead = await readAt(fd, buf, Math.min(CHUNK, size - pos), pos);
      if (bytesRead === 0) return false;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      counts.bytes += bytesRead;
    }
    return true;
  });
}

async function hashOne(f: PendingFile, root: Root, buf: Buffer, counts: HashCounts): Promise<Buffer | null> {
  let fd: number;
  try {
    fd = openBeneath(root, f.rel, f.name);
  } catch (err) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR', 'EXDEV', 'EAGAIN'].includes((err as NativeError).code)) return null;
    throw err;
  }
  try {
    const st = native.fstat(fd);
    if (st.dev !== f.dev || st.ino !== f.ino || st.size !== f.size || st.mtimeSec !== f.mtimeSec || st.mtimeNsec !== f.mtimeNsec) return null;
    const hash = await hashFd(fd, f.size, buf, counts);
    // A write during the read shows in mtime; such a hash describes no version of the file.
    const after = native.fstat(fd);
    if (hash === null || after.mtimeSec !== f.mtimeSec || after.mtimeNsec !== f.mtimeNsec || after.size !== f.size) return null;
    return hash;
  } finally {
    native.close(fd);
  }
}

/** Hashes every pending file of the run; onProgress is called as bytes are read. */
export async function hashPending(index: UnifyIndex, queries: GroupQueries, rootsById: Map<number, Root>, concurrency: number,
  counts: HashCounts): Promise<void> {
  const queue = new PQueue({ concurrency });
  let failure: unknown;
  let done: { f: PendingFile; hash: Buffer }[] = [];
  const flush = (): void => {
    const batch = done;
    done = [];
    // Inside the caller's batch; a nested transaction (a savepoint) would journal every page it touches.
    for (const d of batch) queries.setHash(d.f, d.hash);
    index.commitIfDue();
  };
  let after: [bigint, bigint] = [0n, 0n];
  for (;;) {
    const page = queries.pending(after, PAGE);
    if (page.length === 0) break;
    const last = page[page.length - 1]!;
    after = [last.dev, last.ino];
    for (const f of page) {
      const task = async (): Promise<void> => {
        const buf = takeBuffer();
        try {
          const hash = await hashOne(f, rootsById.get(f.root)!, buf, counts);
          if (hash === null) counts.stale++;
          else {
            counts.files++;
            done.push({ f, hash });
          }
        } catch (err) {
          failure ??= err;
        } finally {
          giveBuffer(buf);
        }
      };
      // A small file is read synchronously anyway: no queue, no promise in between.
      if (f.size <= SYNC_MAX) await task();
      else void queue.add(task);
      if (queue.size > concurrency * 2) await queue.onSizeLessThan(concurrency);
    }
    await queue.onIdle();
    if (failure !== undefined) throw failure;
    flush();
  }
}
