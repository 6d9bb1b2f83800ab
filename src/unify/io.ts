// Reading file content for hashing. A small file is read with
// one synchronous pread: on a warm cache that costs a fraction of a trip
// through the thread pool, and most files of a system tree are small. A
// large file is read in chunks through the thread pool, so several can be
// in flight (p-queue bounds how many) and a cold disk stays busy.
import { read, readSync } from 'node:fs';
import { promisify } from 'node:util';

const readAsync = promisify(read);

/** At most this many bytes are read synchronously in one call. */
export const SYNC_MAX = 256 * 1024;
export const CHUNK = 256 * 1024;

/** Reads up to len bytes at pos into buf; answers how many came. */
export async function readAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  if (len <= SYNC_MAX) return readSync(fd, buf, 0, len, pos);
  return (await readAsync(fd, buf, 0, len, pos)).bytesRead;
}

/** Buffers of CHUNK bytes, reused so that memory stays flat however many files pass. */
const pool: Buffer[] = [];
export const takeBuffer = (): Buffer => pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
export const giveBuffer = (b: Buffer): void => { if (pool.length < 8) pool.push(b); };
