// A corpus for `vefs unify` (the bench group bench/groups/unify.ts): one
// template (the busybox template plus real files of the host: Python's and
// Perl's libraries, time zones, shared libraries; or a Debian tree made by
// debootstrap) and N VE trees made from it the way VEs drift apart: full
// copies with times kept, then in each VE a few files changed, re-moded,
// touched or given an xattr, files of its own, and per-VE state under /etc
// and /var. Deterministic for a given seed.
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildBusyboxTemplate } from '../src/runtime/template.js';
import { native, toBytes } from '../native/index.js';

const LIBS = '/usr/lib/x86_64-linux-gnu';

/** What of the host goes into the template besides busybox. */
export interface HostFiles {
  trees: string[];
  /** Shared libraries of LIBS larger than 64 KiB, in name order, up to about this many bytes. */
  libBytes: number;
}

export const FULL_HOST: HostFiles = { trees: ['/usr/lib/python3.11', '/usr/share/perl', '/usr/share/zoneinfo'], libBytes: 120e6 };
export const QUICK_HOST: HostFiles = { trees: ['/usr/share/zoneinfo'], libBytes: 4e6 };

/** A small seeded generator, so two corpora of one seed are the same. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

function filesUnder(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p, base));
    else if (e.isFile()) out.push(relative(base, p));
  }
  return out;
}

export async function buildTemplate(dir: string, host: HostFiles = FULL_HOST): Promise<void> {
  await buildBusyboxTemplate(dir);
  for (const tree of host.trees) {
    if (!existsSync(tree)) continue;
    mkdirSync(join(dir, tree, '..'), { recursive: true });
    execFileSync('cp', ['-a', tree, join(dir, tree)]);
  }
  const libs = execFileSync('find', [LIBS, '-maxdepth', '1', '-type', 'f', '-size', '+64k', '-printf', '%s %p\\n'], { encoding: 'utf8' })
    .split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]).sort((a, b) => a[1].localeCompare(b[1]));
  mkdirSync(join(dir, LIBS), { recursive: true });
  let total = 0;
  for (const [size, path] of libs) {
    if (total > host.libBytes) break;
    execFileSync('cp', ['-a', path, join(dir, path)]);
    total += Number(size);
  }
}

/** One VE made from the template, then drifted. */
export function buildVe(template: string, dir: string, n: number, seed: number): void {
  execFileSync('cp', ['-a', template, dir]);
  const rnd = random(seed * 1000 + n);
  const files = filesUnder(dir).filter((f) => !f.startsWith('etc/'));
  const pick = (): string => join(dir, files[Math.floor(rnd() * files.length)]!);
  for (let i = 0; i < files.length * 0.01; i++) appendFileSync(pick(), `changed in VE ${n}\n`);
  for (let i = 0; i < files.length * 0.005; i++) chmodSync(pick(), 0o600);
  for (let i = 0; i < files.length * 0.005; i++) { const p = pick(); utimesSync(p, new Date(), new Date()); }
  for (let i = 0; i < 5; i++) native.lsetxattr(toBytes(pick()), 'user.ve', Buffer.from(`${n}`), 0);
  mkdirSync(join(dir, 'srv/app'), { recursive: true });
  for (let i = 0; i < 30; i++) writeFileSync(join(dir, 'srv/app', `own-${i}`), `VE ${n} file ${i} ${'x'.repeat(Math.floor(rnd() * 50_000))}`);
  writeFileSync(join(dir, 'etc/hostname'), `ve${n}\n`);
  mkdirSync(join(dir, 'var/log'), { recursive: true });
  writeFileSync(join(dir, 'var/log/messages'), `boot of VE ${n}\n`.repeat(1000));
}
