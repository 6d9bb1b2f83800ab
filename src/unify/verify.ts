// Step 5: the byte-for-byte comparison that precedes every link. A hash
// match only nominates a pair; only equal bytes let it be linked.
import { read } from 'node:fs';
import { promisify } from 'node:util';

const readAsync = promisify(read);
const CHUNK = 256 * 1024;

export interface VerifyCounts {
  bytes: number;
}

/**
 * Compares the first `size` bytes of two open files. `stillValid` is asked
 * between chunks (link.ts: is a writer waiting for the file?) and stops the
 * comparison early when it answers false.
 */
export async function sameBytes(a: number, b: number, size: number, counts: VerifyCounts,
  stillValid: () => boolean = () => true): Promise<boolean> {
  const bufA = Buffer.allocUnsafe(Math.min(CHUNK, size));
  const bufB = Buffer.allocUnsafe(Math.min(CHUNK, size));
  for (let pos = 0; pos < size;) {
    const want = Math.min(CHUNK, size - pos);
    const [ra, rb] = await Promise.all([readAsync(a, bufA, 0, want, pos), readAsync(b, bufB, 0, want, pos)]);
    counts.bytes += ra.bytesRead + rb.bytesRead;
    if (ra.bytesRead !== want || rb.bytesRead !== want) return false;
    if (!bufA.equals(bufB)) return false;
    pos += want;
    if (!stillValid()) return false;
  }
  // A file that grew meanwhile is caught by the re-stat that follows (link.ts).
  return true;
}
