// fio, the data workloads' instrument. Every job is buffered I/O through the
// page cache (psync engine): O_DIRECT means something different, or nothing,
// on each FUSE filesystem, so cache state is set by the harness instead
// (dropped for cold figures) and writes end with an fsync that fio counts in
// the job's runtime, so a written figure is data on disk.
import type { Context } from './types.js';

export interface FioSide {
  bw_bytes: number;
  iops: number;
  runtime: number;
  total_ios: number;
}

export interface FioJob {
  read: FioSide;
  write: FioSide;
}

const COMMON = ['--ioengine=psync', '--invalidate=0', '--fallocate=none', '--output-format=json'];

/** Runs one fio job on file with the given options; resolves with its JSON job record and the wall time. */
export async function fio(ctx: Context, name: string, file: string, options: string[]): Promise<{ job: FioJob; seconds: number }> {
  const { stdout, seconds } = await ctx.run('fio', [`--name=${name}`, `--filename=${file}`, ...COMMON, ...options]);
  // fio prints notices before its JSON on the same stream.
  const start = stdout.indexOf('{');
  const end = stdout.lastIndexOf('}');
  let parsed: { jobs?: FioJob[] };
  try {
    parsed = JSON.parse(stdout.slice(start, end + 1)) as { jobs?: FioJob[] };
  } catch {
    throw new Error(`fio ${name}: output is not JSON: ${stdout.slice(0, 300)}`);
  }
  const job = parsed.jobs?.[0];
  if (!job) throw new Error(`fio ${name}: no job in its output`);
  return { job, seconds };
}

export const MiB = 2 ** 20;
