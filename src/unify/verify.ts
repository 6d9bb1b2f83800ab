// Step 5: the byte-for-byte comparison that precedes every link. A hash
// match only nominates a pair; only equal bytes let it be linked. The
// comparison runs in the addon on a worker thread (compareFiles), reads the
// master once for all targets of a batch, and watches the read leases: a
// writer that starts waiting for a file stops its comparison.
import { native } from '../../native/index.js';

export type Verdict = 'same' | 'differs' | 'short' | 'writer-waiting';

const VERDICTS: Verdict[] = ['same', 'differs', 'short', 'writer-waiting'];

export interface VerifyCounts {
  bytes: number;
}

export async function compareBytes(master: number, targets: number[], size: number, leased: boolean, counts: VerifyCounts): Promise<Verdict[]> {
  if (targets.length === 0) return [];
  const r = await native.compareFiles(master, targets, size, leased);
  counts.bytes += r.bytesRead;
  return r.outcomes.map((o) => VERDICTS[o]!);
}
