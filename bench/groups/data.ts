// Data: sequential and random I/O on a large template file and on private
// files, the copy-up of a large template file, and fsync-heavy small writes.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fio, MiB } from '../fio.js';
import { fillFile } from '../template.js';
import { OUT, type Context, type Group } from '../types.js';

const LARGE = 'srv/data/large.bin';

const mkOut = async (ctx: Context): Promise<void> => {
  await ctx.run('mkdir', ['-p', join(ctx.roots[0], OUT)]);
};

export const data: Group = {
  id: 'data',
  title: 'Data',
  method: 'fio 1 MiB sequential and 4 KiB random jobs, psync engine, buffered (no O_DIRECT: FUSE filesystems do not all honour it). '
    + 'Cold: caches dropped and every backend remounted just before the job. Written figures end with an fsync inside the job\'s runtime. '
    + 'Copy-up is the wall time of dd writing 4 KiB into the large template file and fsyncing it (fio would add its own start-up, '
    + 'about 0.3 s of polling, to a figure that is all open and copy); on raw that is an in-place write, the floor.',
  tools: ['fio', 'dd'],
  inPlace: [LARGE],
  async template({ dir, sizes }) {
    mkdirSync(join(dir, 'srv/data'), { recursive: true });
    fillFile(join(dir, LARGE), sizes.largeBytes);
  },
  workloads(sizes) {
    const large = `--size=${sizes.largeBytes}`;
    const mib = (n: number): string => `${Math.round(n / MiB)} MiB`;
    // Untimed layout with dd: fio would add its fixed start-up (a few hundred ms of polling) to every sample.
    const writePrivate = (file: string, bytes: number) => async (ctx: Context): Promise<void> => {
      await mkOut(ctx);
      await ctx.run('dd', ['if=/dev/zero', `of=${join(ctx.roots[0], OUT, file)}`, 'bs=1M', `count=${bytes / MiB}`, 'conv=fsync', 'status=none']);
    };
    return [
      {
        id: 'seq-read-template-cold',
        title: `sequential read of a ${mib(sizes.largeBytes)} template file, cold`,
        unit: 'MiB/s', better: 'higher', cold: true,
        measure: async (ctx) => (await fio(ctx, 'seqread', join(ctx.roots[0], LARGE),
          ['--rw=read', '--bs=1M', large, '--readonly'])).job.read.bw_bytes / MiB,
      },
      {
        id: 'seq-read-template-warm',
        title: `sequential read of the same file, warm (read once before)`,
        unit: 'MiB/s', better: 'higher',
        prepare: async (ctx) => {
          await ctx.run('dd', [`if=${join(ctx.roots[0], LARGE)}`, 'of=/dev/null', 'bs=1M', 'status=none']);
        },
        measure: async (ctx) => (await fio(ctx, 'seqread', join(ctx.roots[0], LARGE),
          ['--rw=read', '--bs=1M', large, '--readonly'])).job.read.bw_bytes / MiB,
      },
      {
        id: 'seq-read-private-cold',
        title: `sequential read of a ${mib(sizes.largeBytes)} private file, cold`,
        unit: 'MiB/s', better: 'higher', cold: true,
        prepare: writePrivate('private.bin', sizes.largeBytes),
        measure: async (ctx) => (await fio(ctx, 'seqread', join(ctx.roots[0], OUT, 'private.bin'),
          ['--rw=read', '--bs=1M', large, '--readonly'])).job.read.bw_bytes / MiB,
      },
      {
        id: 'seq-write-private',
        title: `sequential write of a new ${mib(sizes.largeBytes)} private file, fsync at the end`,
        unit: 'MiB/s', better: 'higher',
        prepare: mkOut,
        measure: async (ctx) => (await fio(ctx, 'seqwrite', join(ctx.roots[0], OUT, 'new.bin'),
          ['--rw=write', '--bs=1M', large, '--end_fsync=1'])).job.write.bw_bytes / MiB,
      },
      {
        id: 'rand-read-template-cold',
        title: `4 KiB random reads of the ${mib(sizes.largeBytes)} template file, ${sizes.randSeconds} s from cold`,
        unit: 'IOPS', better: 'higher', cold: true,
        measure: async (ctx) => (await fio(ctx, 'randread', join(ctx.roots[0], LARGE),
          ['--rw=randread', '--bs=4k', large, '--readonly', `--runtime=${Math.round(sizes.randSeconds * 1000)}ms`, '--time_based'])).job.read.iops,
      },
      {
        id: 'rand-write-private',
        title: `4 KiB random writes to a ${mib(sizes.randWriteBytes)} private file, ${sizes.randSeconds} s, fsync at the end`,
        unit: 'IOPS', better: 'higher',
        prepare: writePrivate('rand.bin', sizes.randWriteBytes),
        measure: async (ctx) => (await fio(ctx, 'randwrite', join(ctx.roots[0], OUT, 'rand.bin'),
          ['--rw=randwrite', '--bs=4k', `--size=${sizes.randWriteBytes}`, `--runtime=${Math.round(sizes.randSeconds * 1000)}ms`, '--time_based',
            '--end_fsync=1'])).job.write.iops,
      },
      {
        id: 'copy-up-cold',
        title: `4 KiB write into the ${mib(sizes.largeBytes)} template file (copy-up), fsync, cold: wall time of dd`,
        unit: 's', better: 'lower', cold: true,
        measure: async (ctx) => (await ctx.run('dd', ['if=/dev/zero', `of=${join(ctx.roots[0], LARGE)}`, 'bs=4k', 'count=1',
          'conv=notrunc,fsync', 'status=none'])).seconds,
      },
      {
        id: 'fsync-small-writes',
        title: `4 KiB appends, each followed by fsync, ${Math.round(sizes.fsyncBytes / 4096)} of them`,
        unit: 'IOPS', better: 'higher',
        prepare: mkOut,
        measure: async (ctx) => (await fio(ctx, 'fsync', join(ctx.roots[0], OUT, 'fsync.bin'),
          ['--rw=write', '--bs=4k', `--size=${sizes.fsyncBytes}`, '--fsync=1'])).job.write.iops,
      },
    ];
  },
};
