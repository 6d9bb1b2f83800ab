// The shapes a benchmark group is written against. A group is one file under
// bench/groups/ that adds its content to the shared template and lists its
// workloads; the harness runs every workload on every backend.

/** Sizes of one run: the full run's, or --quick's small ones. */
export interface Sizes {
  quick: boolean;
  /** The part of the real tree that stat and untar work on, relative to the root: '.' for all of it. */
  tree: string;
  /** The large template file (sequential read, random read, copy-up) and the private file of the same size. */
  largeBytes: number;
  /** The private file that random writes go to. */
  randWriteBytes: number;
  /** How long each random-I/O job runs. */
  randSeconds: number;
  /** How much the fsync-heavy job writes, 4 KiB and one fsync at a time. */
  fsyncBytes: number;
  /** Entries of the big template directory. */
  manyEntries: number;
  /** Small files created, then unlinked. */
  smallFiles: number;
  /** The template file that several mounts read (page cache group). */
  sharedBytes: number;
  /** How many VE roots read that file. */
  sharedMounts: number;
  /** The numbers of VE roots that read and map one file in the sharing group. */
  shareCounts: number[];
  /** C files of the make job. */
  jobSources: number;
}

/** What the harness hands a group when it builds the template. */
export interface TemplateSpec {
  /** The template directory, being built. */
  dir: string;
  sizes: Sizes;
}

/** Where a workload runs: one or more VE roots of one backend over the template. */
export interface Context {
  backend: string;
  /** The VE roots (mountpoints); most workloads use only the first. */
  roots: string[];
  /** The template directory itself (the backing files of every union backend). */
  template: string;
  /** The directory that holds what every backend's VE root shows (the template, or raw's copy of it). */
  backing: string;
  /** Where a file written beside the mount shows in each root: its private tree (raw: its own tree, the same for every root). */
  uppers: string[];
  /** The processes that serve the VE roots (FUSE servers; none for a kernel filesystem). */
  servers(): Promise<number[]>;
  /** A tarball of the template's real tree, outside every mount. */
  tarball: string;
  sizes: Sizes;
  /** Runs a command as a child process; rejects naming it if it fails or outlives its time. */
  run(file: string, args: string[], opts?: { cwd?: string; env?: NodeJS.ProcessEnv }): Promise<{ stdout: string; stderr: string; seconds: number }>;
  /** Extra figures for the JSON (not tabulated): a method's breakdown, for instance. */
  note(key: string, value: unknown): void;
}

export type Better = 'higher' | 'lower';

export interface Workload {
  id: string;
  /** What it does and what the figure is, in one line for the report. */
  title: string;
  unit: string;
  better: Better;
  /** Caches are dropped (sync, drop_caches, every backend remounted) between prepare and measure. */
  cold?: boolean;
  /** VE roots mounted at once (default 1). */
  mounts?: number;
  /**
   * Creates many files: what its samples leave is removed only at the end of
   * the run, so that no sample creates files right after mass deletions
   * (ext4 without a journal skips inodes freed in the last minute, and then
   * every creation on every backend costs ten times more).
   */
  manyFiles?: boolean;
  /** Untimed: brings the VE root(s) into the state the measurement starts from. */
  prepare?(ctx: Context): Promise<void>;
  /** Timed: the figure of one sample. */
  measure(ctx: Context): Promise<number>;
}

export interface Group {
  id: string;
  title: string;
  /** How the group measures, for the report: the method, in a few sentences. */
  method: string;
  /** Commands the group cannot run without; a missing one skips the group with a note. */
  tools?: string[];
  /** Template files that its workloads write in place: the raw backend's tree has real copies of them. */
  inPlace?: string[];
  /** Adds what the group needs to the template (built once per run, before any mount). */
  template?(spec: TemplateSpec): Promise<void>;
  workloads(sizes: Sizes): Workload[];
}

/** Every VE root writes below this directory, which the template lacks, so a sample can be cleaned. */
export const OUT = 'bench-out';
