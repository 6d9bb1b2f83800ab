// unify's step of `vefs demo`: three VE trees made from the demo's template,
// one of them changed, unified against the template, shown, then reverted so
// that the demo directory can be removed as usual. The demo calls it after
// its own steps; nothing here mounts anything.
import { execFile } from 'node:child_process';
import { appendFile, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { toBytes } from '../../native/index.js';
import { bytes } from './report.js';
import { unify, type UnifyOptions } from './run.js';

const run = promisify(execFile);

/** Runs the step in dir/unify over the template; say prints a line. */
export async function unifyDemoStep(template: string, dir: string, say: (line: string) => void): Promise<void> {
  const base = join(dir, 'unify');
  await mkdir(base, { recursive: true });
  const ves = ['ve1', 've2', 've3'].map((v) => join(base, v));
  for (const ve of ves) await run('cp', ['-a', template, ve]);
  await appendFile(join(ves[1]!, 'usr/share/doc/README'), 'changed in ve2\n');
  const opts: UnifyOptions = { roots: ves.map(toBytes), templates: [toBytes(template)], index: join(base, 'unify.db') };
  say(`Unifying three VE trees copied from the template (ve2 changed its README)`);
  const r = await unify(opts);
  say(`   ${r.filesScanned} files scanned, ${r.linksMade} links made, ${r.inodesReclaimed} inodes and ${bytes(r.bytesReclaimed)} reclaimed; /etc left alone`);
  const busybox = join(ves[0]!, 'bin/busybox');
  const { stdout } = await run('lsattr', ['-d', busybox]);
  say(`   ${busybox}: ${(await stat(busybox)).nlink} names, lsattr ${stdout.split(' ')[0]} (immutable, as VServer's unified files)`);
  say(`   ve2's changed README keeps its own inode: ${(await stat(join(ves[1]!, 'usr/share/doc/README'))).nlink} name`);
  const again = await unify(opts);
  say(`   a rerun reads ${bytes(again.bytesRead)} and links ${again.linksMade}`);
  const back = await unify({ ...opts, revert: true });
  say(`   --revert: ${back.reverted!.paths} paths have their own writable copy again`);
}
