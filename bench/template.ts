// The template every backend's VE roots share, built once per run on the
// run's disk: the busybox template, plus a real Debian tree — the files of
// the host's C toolchain packages (gcc, make, libc6-dev and everything they
// depend on), so that a VE can build a program from its own root — plus what
// each group adds. The real tree's tarball is the untar workload's input.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';
import type { Group, Sizes } from './types.js';
import { buildBusyboxTemplate } from '../src/runtime/template.js';

/** The packages whose closure makes the real tree. */
const TOOLCHAIN = ['gcc', 'make', 'libc6-dev'];

interface Pkg {
  name: string;
  installed: boolean;
  provides: string[];
  /** Each entry: the alternatives of one dependency. */
  depends: string[][];
}

const bare = (dep: string): string => dep.trim().split(/[\s(:]/)[0];

async function installedPackages(): Promise<Map<string, Pkg>> {
  const { stdout } = await run('dpkg-query', ['-W', '-f', '${binary:Package}\t${db:Status-Status}\t${Provides}\t${Depends}, ${Pre-Depends}\n']);
  const pkgs = new Map<string, Pkg>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [binary, status, provides, depends] = line.split('\t');
    const pkg: Pkg = {
      name: binary,
      installed: status === 'installed',
      provides: provides.split(',').map(bare).filter(Boolean),
      depends: depends.split(',').map((d) => d.split('|').map(bare).filter(Boolean)).filter((alts) => alts.length > 0),
    };
    if (pkg.installed) pkgs.set(bare(binary), pkg);
  }
  return pkgs;
}

/** The installed packages that the toolchain needs, following Depends and Pre-Depends (first installed alternative). */
async function toolchainPackages(): Promise<string[]> {
  const pkgs = await installedPackages();
  const providers = new Map<string, string>();
  for (const [name, p] of pkgs) for (const v of p.provides) if (!providers.has(v)) providers.set(v, name);
  const seen = new Set<string>();
  const todo = [...TOOLCHAIN];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    const pkg = pkgs.get(name);
    if (!pkg) {
      if (TOOLCHAIN.includes(name)) throw new Error(`the Debian package ${name} is not installed (.ci/install installs it)`);
      continue;
    }
    seen.add(name);
    for (const alts of pkg.depends) {
      const pick = alts.find((a) => pkgs.has(a)) ?? alts.map((a) => providers.get(a)).find(Boolean);
      if (pick) todo.push(pick);
    }
  }
  return [...seen].map((n) => pkgs.get(n)!.name).sort();
}

/**
 * Non-directory paths of those packages, relative to /; directories come
 * with their files. A symlink to a directory (merged /usr's /lib, /lib64)
 * stands for a directory too: the template keeps its own real directories.
 */
async function toolchainFiles(): Promise<string[]> {
  const { stdout } = await run('dpkg-query', ['-L', ...(await toolchainPackages())]);
  const files = new Set<string>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('/')) continue;
    try {
      if (!statSync(line).isDirectory()) files.add(line.slice(1));
    } catch {
      // listed by its package, absent on disk (removed by the admin, or a diverted name)
    }
  }
  return [...files].sort();
}

/** Writes bytes of incompressible data, so that no layer can store or move it for less than its size. */
export function fillFile(path: string, bytes: number): void {
  const chunk = randomBytes(1 << 20);
  const fd = openSync(path, 'w', 0o644);
  try {
    for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface BuiltTemplate {
  dir: string;
  tarball: string;
  /** Entries of the real tree (busybox + toolchain). */
  realEntries: number;
  /** Entries of the part of it that sizes.tree names. */
  treeEntries: number;
  toolchainFiles: number;
}

/** Builds the template in dir, and the tarball of sizes.tree (a part of the real tree, or all of it) at tarball. */
export async function buildTemplate(dir: string, tarball: string, sizes: Sizes, groups: Group[]): Promise<BuiltTemplate> {
  await buildBusyboxTemplate(dir);
  const files = await toolchainFiles();
  const list = join(dir, '..', 'toolchain.list');
  writeFileSync(list, `${files.join('\n')}\n`);
  // The host's /lib is a symlink into /usr; archiving each listed path and
  // extracting it under the template keeps the names the packages use.
  await run('bash', ['-o', 'pipefail', '-c',
    'tar -C / --no-recursion -cf - -T "$1" | tar -C "$2" -xf -', 'bash', list, dir]);
  const count = async (d: string): Promise<number> => (await run('find', [d, '-printf', '.'])).stdout.length;
  const realEntries = await count(dir);
  const treeEntries = await count(join(dir, sizes.tree));
  await run('tar', ['-C', join(dir, sizes.tree), '-cf', tarball, '.']);
  for (const g of groups) await g.template?.({ dir, sizes });
  return { dir, tarball, realEntries, treeEntries, toolchainFiles: files.length };
}

/**
 * The raw backend's tree: the finished template, hard-linked (a real
 * directory tree, every file the template's own inode), except the files that
 * workloads write in place, which are real copies, so raw never writes the
 * template. Linking keeps a full run's setup seconds, not minutes.
 */
export async function rawTree(template: string, dest: string, inPlace: string[]): Promise<void> {
  await run('cp', ['-al', template, dest]);
  for (const p of inPlace) {
    rmSync(join(dest, p));
    await run('cp', ['-a', join(template, p), join(dest, p)]);
  }
}
