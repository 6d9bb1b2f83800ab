// Step 3: hash the files that need it, XXH128 over the whole content, in
// batches on the thread pool (native hashFiles) with a bounded number in
// flight (p-queue): both cores hash while the event loop reads the next
// page of the index, on a cold cache parallel reads keep the disk busy, and
// the bound keeps memory to one buffer per batch. Files come from the index
// in pages, so millions of them are never in memory at once. A file is read
// only if it is still the version the walk saw (dev, ino, size, mtime);
// otherwise it waits for the next run.
import { createRequire } from 'node:module';
import type xxhash from 'xxhash-addon';
import { native, C } from '../../native/index.js';
import { beneath, child } from './bytes.js';
import type { GroupQueries, PendingFile } from './groups.js';
import type { UnifyIndex } from './index.js';
import { BENEATH, type Root } from './roots.js';

const SEED = Buffer.alloc(4);
const PAGE = 2048;

type Hasher = InstanceType<typeof xxhash.XXHash128>;

// A hasher holds native memory that V8 does not see; one per file would
// pile up tens of megabytes between collections. They are reused instead.
const hashers: Hasher[] = [];

// xxhash-addon loads on the first xattr digest, not with this module: a rerun that finds nothing
// changed reads no xattrs, and loading the package costs node-gyp-build's search and a dlopen.
// (Content is hashed by the native hashFiles.)
const require = createRequire(import.meta.url);
let XXHash128: typeof xxhash.XXHash128 | undefined;

function newHasher(): Hasher {
  XXHash128 ??= (require('xxhash-addon') as typeof xxhash).XXHash128;
  return new XXHash128(SEED);
}

/** Runs fn with a fresh XXH128 state and answers its digest. */
export function withHasher(fn: (h: Hasher) => Promise<boolean>): Promise<Buffer | null>;
export function withHasher(fn: (h: Hasher) => void): Buffer;
export function withHasher(fn: (h: Hasher) => void | Promise<boolean>): Buffer | Promise<Buffer | null> {
  const h = hashers.pop() ?? newHasher();
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

/** Files per native batch: small enough that several batches keep the thread pool (and a cold disk) busy. */
const BATCH = 64;

/** Hashes one batch on a worker thread (native hashFiles: opened beneath its ROOT, the walk's version checked). */
async function hashBatch(files: PendingFile[], rootsById: Map<number, Root>, counts: HashCounts): Promise<{ f: PendingFile; hash: Buffer }[]> {
  const roots = new Int32Array(files.length);
  const ids = new BigUint64Array(files.length * 2);
  const versions = new Float64Array(files.length * 3);
  files.forEach((f, i) => {
    roots[i] = rootsById.get(f.root)!.fd;
    ids[2 * i] = f.dev;
    ids[2 * i + 1] = f.ino;
    versions.set([f.size, f.mtimeSec, f.mtimeNsec], 3 * i);
  });
  const r = await native.hashFiles(roots, files.map((f) => beneath(child(f.rel, f.name))), ids, versions);
  counts.bytes += r.bytesRead;
  const done: { f: PendingFile; hash: Buffer }[] = [];
  r.hashes.forEach((hash, i) => {
    if (hash === null) counts.stale++;
    else {
      counts.files++;
      done.push({ f: files[i]!, hash });
    }
  });
  return done;
}

/** Hashes every pending file of the run, at most `concurrency` batches in flight. */
export async function hashPending(index: UnifyIndex, queries: GroupQueries, rootsById: Map<number, Root>, concurrency: number,
  counts: HashCounts): Promise<void> {
  // Loaded here, not with the module: xattrs.ts needs withHasher on every walk, hashing only some runs.
  const { default: PQueue } = await import('p-queue');
  const queue = new PQueue({ concurrency });
  let failure: unknown;
  let after: [bigint, bigint] = [0n, 0n];
  for (;;) {
    const page = queries.pending(after, PAGE);
    if (page.length === 0) break;
    const last = page[page.length - 1]!;
    after = [last.dev, last.ino];
    for (let i = 0; i < page.length; i += BATCH) {
      const files = page.slice(i, i + BATCH);
      void queue.add(async () => {
        try {
          // Inside the caller's batch; a nested transaction (a savepoint) would journal every page it touches.
          for (const d of await hashBatch(files, rootsById, counts)) queries.setHash(d.f, d.hash);
        } catch (err) {
          failure ??= err;
        }
      });
    }
    // The next page is read from the index while the last batches of this one are hashed.
    if (queue.size > concurrency) await queue.onSizeLessThan(concurrency);
    if (failure !== undefined) break;
    index.commitIfDue();
  }
  await queue.onIdle();
  if (failure !== undefined) throw failure;
}
