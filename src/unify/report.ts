// Step 7: what a run did, as one summary line for people and cron mail, or
// as JSON for scripts (`--json`).
import type { SkipReason } from './link.js';
import type { RevertCounts } from './revert.js';
import type { SectionStats } from './section.js';

export interface UnifyReport {
  mode: 'unify' | 'revert';
  dryRun: boolean;
  /** As given (UTF-8 for display); templates are listed in `templates` too. */
  roots: string[];
  templates: string[];
  dirsScanned: number;
  /** Of those, directories found unchanged without opening them (scan.ts KnownDir). */
  dirsPassed: number;
  filesScanned: number;
  /** Of those, names not stat'ed: sealed at the last walk in a directory unchanged since (scan.ts). */
  filesTrusted: number;
  /** Sum of the sizes of the files scanned: what a tool without an index would read. */
  bytesScanned: number;
  filesHashed: number;
  /** Content actually read: hashing plus byte-for-byte comparison. */
  bytesRead: number;
  /** Sets of two or more names that may share an inode. */
  groups: number;
  /** Names that already shared their group's inode: counted, not touched. */
  alreadyLinked: number;
  /** Names replaced by a link (in a dry run: that would be). */
  linksMade: number;
  inodesReclaimed: number;
  bytesReclaimed: number;
  skipped: Partial<Record<SkipReason, number>>;
  /** Temporary names of interrupted runs, removed. */
  leftoversRemoved: number;
  reverted: RevertCounts | null;
  section: SectionStats & { windowMeanMs: number };
  /** Seconds since the start at which each phase ended (scan, hash, group, link). */
  phases: Record<string, number>;
  seconds: number;
  /** User and system CPU time of the process (a busy host stretches `seconds`, not this). */
  cpuSeconds: number;
  peakRssBytes: number;
}

const GB = 1e9;
const MB = 1e6;

export function bytes(n: number): string {
  if (n >= GB) return `${(n / GB).toFixed(2)} GB`;
  if (n >= MB) return `${(n / MB).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

const n = (count: number, one: string, many = `${one}s`): string => `${count} ${count === 1 ? one : many}`;

export function summaryLine(r: UnifyReport): string {
  const would = r.dryRun ? 'would be ' : '';
  const time = `${r.seconds.toFixed(2)} s`;
  if (r.mode === 'revert') {
    const v = r.reverted!;
    return `vefs unify --revert${r.dryRun ? ' (dry run)' : ''}: ${n(r.filesScanned, 'file')} scanned, ${n(v.paths, 'path')} ${would}given their own copy `
      + `(${n(v.inodes, 'unified inode')}, ${bytes(v.bytesCopied)} ${would}copied), ${time}`;
  }
  const skipped = Object.values(r.skipped).reduce((a, b) => a + (b ?? 0), 0);
  return `vefs unify${r.dryRun ? ' (dry run)' : ''}: ${n(r.filesScanned, 'file')} scanned, ${bytes(r.bytesRead)} read, `
    + `${n(r.groups, 'group')}, ${n(r.linksMade, 'link')} ${r.dryRun ? 'to make' : 'made'}, ${r.alreadyLinked} already linked, `
    + `${n(r.inodesReclaimed, 'inode')} and ${bytes(r.bytesReclaimed)} ${would}reclaimed`
    + `${skipped > 0 ? `, ${skipped} skipped` : ''}, ${time}`;
}
