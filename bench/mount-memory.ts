// Server memory per mount: one VEFS server carries N VE roots of the busybox
// template; after every root has been walked (ls -lR) and written to, the
// server's RSS is read at N = 0, 20 and 100 (or the counts given as
// arguments). Prints a markdown table for the README.
//   node dist/bench/mount-memory.js [20 100]
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBusyboxTemplate } from '../src/runtime/template.js';
import { call, type Status } from '../src/vefs/control.js';
import { ensureServer } from '../src/vefs/daemon.js';
import { socketPath } from '../src/vefs/state.js';
import { umount } from '../src/vefs/umount.js';

const run = promisify(execFile);

async function main(): Promise<void> {
  const counts = process.argv.slice(2).map(Number);
  const levels = counts.length > 0 ? counts : [20, 100];
  const base = await mkdtemp(join(tmpdir(), 'vefs-bench-mem-'));
  process.env.VEFS_STATE_DIR = join(base, 'state');
  const template = join(base, 'template');
  await buildBusyboxTemplate(template);
  await ensureServer();
  const mounted: string[] = [];
  const rows: string[] = [];
  const rss = async () => (await call<Status>(socketPath(), { op: 'status' })).rssBytes / 2 ** 20;
  try {
    const idle = await rss();
    rows.push(`| 0 | ${idle.toFixed(1)} | |`);
    for (const target of levels) {
      while (mounted.length < target) {
        const i = mounted.length;
        const priv = join(base, `private/${i}`);
        const mnt = join(base, `root/${i}`);
        await mkdir(priv, { recursive: true });
        await mkdir(mnt, { recursive: true });
        await call(socketPath(), { op: 'mount', request: { templates: [template], privateDir: priv, mountpoint: mnt } });
        mounted.push(mnt);
        await run('ls', ['-lR', mnt], { maxBuffer: 64 * 2 ** 20 });
        await writeFile(join(mnt, 'etc/hostname'), `ve${i}\n`);
      }
      const now = await rss();
      rows.push(`| ${target} | ${now.toFixed(1)} | ${((now - idle) / target).toFixed(2)} |`);
    }
  } finally {
    for (const m of mounted) await umount(m).catch(() => undefined);
    await call(socketPath(), { op: 'shutdown' }).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  }
  console.log('| mounts | server RSS (MiB) | MiB per mount |\n|---|---|---|');
  console.log(rows.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
