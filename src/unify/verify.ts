// Step 5: the byte-for-byte comparison that precedes every link. A hash
// match only nominates a pair; only equal bytes let it be linked. The
// comparison runs in the addon on a worker thread (compareFiles), which also
// watches the read leases: a writer that starts waiting for either file
// stops it.
import { native } from '../../native/index.js';

export type Verdict = 'same' | 'differs' | 'short' | 'writer-waiting';

const VERDICTS: Verdict[] = ['same', 'differs', 'short', 'writer-waiting'];

export interface VerifyCounts {
  bytes: number;
}

export async function compareBytes(a: number, b: number, size: number, leased: boolean, counts: VerifyCounts): Promise<Verdict> {
  const r = await native.compareFiles(a, b, size, leased);
  counts.bytes += r.bytesRead;
  return VERDICTS[r.outcome]!;
}
