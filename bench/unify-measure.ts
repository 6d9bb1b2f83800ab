// Times `vefs unify` against jdupes -rL, util-linux hardlink -X and rdfind
// on one corpus (bench/unify-corpus.ts): a full run, a rerun with nothing
// changed, and a run after one more VE was added; wall and CPU seconds,
// peak RSS, and what each reclaimed. Every tool gets a fresh copy of the
// corpus, warm in the page cache (it was just written). Tools that are not
// installed are skipped.
//
//   node dist/bench/unify-measure.js DIR [VES=8]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildTemplate, buildVe } from './unify-corpus.js';

const VEFS = new URL('../src/cli/main.js', import.meta.url).pathname;

interface Timed {
  wall: number;
  cpu: number;
  rssMb: number;
}

/** Runs a command under /usr/bin/time; answers wall and CPU seconds and peak RSS. */
function timed(cmd: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Timed {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', ...cmd], { cwd, env, encoding: 'utf8', maxBuffer: 1 << 30 });
  const last = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  if (r.status !== 0 && !cmd[0]!.includes('hardlink')) throw new Error(`${cmd.join(' ')}: ${r.stderr.slice(-500)}`);
  return { wall: last[0]!, cpu: last[1]! + last[2]!, rssMb: last[3]! / 1024 };
}

/** Inodes and bytes that sharing saved, counted with find over the trees. */
function reclaimed(dir: string, trees: string[]): { inodes: number; bytes: number } {
  const out = execFileSync('find', [...trees.map((t) => join(dir, t)), '-type', 'f', '-printf', '%i %s\\n'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const seen = new Set<string>();
  let inodes = 0;
  let bytes = 0;
  for (const line of out.split('\n').filter(Boolean)) {
    const [ino, size] = line.split(' ');
    if (seen.has(ino!)) {
      inodes++;
      bytes += Number(size);
    } else seen.add(ino!);
  }
  return { inodes, bytes };
}

const has = (tool: string): boolean => spawnSync('which', [tool]).status === 0;

function tools(state: string): Record<string, ((trees: string[]) => string[]) | null> {
  return {
    'vefs unify': (trees) => ['node', VEFS, 'unify', '--quiet', '--no-default-excludes', ...trees],
    'vefs unify --template': (trees) => ['node', VEFS, 'unify', '--quiet', '--template', trees[0]!, ...trees.slice(1)],
    'jdupes -rL': has('jdupes') ? (trees) => ['jdupes', '-rLq', ...trees] : null,
    'hardlink -X': has('hardlink') ? (trees) => ['hardlink', '-X', '-q', ...trees] : null,
    rdfind: has('rdfind') ? (trees) => ['rdfind', '-makehardlinks', 'true', '-outputname', join(state, 'rdfind.txt'), ...trees] : null,
  };
}

async function main(): Promise<void> {
  const [dir, n = '8'] = process.argv.slice(2);
  if (!dir) throw new Error('usage: unify-measure DIR [VES]');
  const src = join(dir, 'corpus');
  if (!existsSync(src)) {
    await buildTemplate(join(src, 'template'));
    for (let i = 1; i <= Number(n) + 1; i++) buildVe(join(src, 'template'), join(src, `ve${i}`), i, 1);
  }
  const ves = Array.from({ length: Number(n) }, (_, i) => `ve${i + 1}`);
  const trees = ['template', ...ves];
  const extra = `ve${Number(n) + 1}`;
  console.log('| tool | full: wall / CPU s | rerun: wall / CPU s | add one VE: wall / CPU s | peak RSS MB | inodes / GB reclaimed |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, cmd] of Object.entries(tools(dir))) {
    if (cmd === null) continue;
    const work = join(dir, 'run');
    spawnSync('chattr', ['-R', '-i', work], { stdio: 'ignore' });
    rmSync(work, { recursive: true, force: true });
    execFileSync('cp', ['-a', src, work]);
    const env = { ...process.env, VEFS_STATE_DIR: join(dir, 'state') };
    rmSync(env.VEFS_STATE_DIR, { recursive: true, force: true });
    const full = timed(cmd(trees), work, env);
    const again = timed(cmd(trees), work, env);
    const added = timed(cmd([...trees, extra]), work, env);
    const r = reclaimed(work, [...trees, extra]);
    const f = (x: Timed): string => `${x.wall.toFixed(2)} / ${x.cpu.toFixed(2)}`;
    console.log(`| ${name} | ${f(full)} | ${f(again)} | ${f(added)} | ${Math.max(full.rssMb, again.rssMb, added.rssMb).toFixed(0)} | ${r.inodes} / ${(r.bytes / 1e9).toFixed(2)} |`);
  }
  spawnSync('chattr', ['-R', '-i', join(dir, 'run')], { stdio: 'ignore' });
  rmSync(join(dir, 'run'), { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});
