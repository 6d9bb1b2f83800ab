// Trees for `vefs unify` tests: a template and VE copies of it, the CLI with
// its JSON report, and a manifest of everything a VE can see of its files
// (bytes, type, mode, owner, size, mtime, xattrs, symlink targets; not
// st_ino, st_nlink, ctime or atime), to prove unify changed none of it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native, C } from '../../native/index.js';
import type { UnifyReport } from '../../src/unify/report.js';
import { vefs, type CliResult } from './vefs.js';

/** Writes files (relative path → content) below dir, parents included. */
export function writeTree(dir: string, files: Record<string, string | Buffer>): void {
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
}

/** A copy that keeps modes, owners, times and xattrs, as a VE made from a template is. */
export function copyTree(from: string, to: string): void {
  execFileSync('cp', ['-a', from, to]);
}

/** Deterministic content of a given size, different for each seed. */
export function bytesOf(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface UnifyRun extends CliResult {
  report: UnifyReport;
}

/** `vefs unify --json ...`; fails the caller if it did not exit 0. */
export async function unifyJson(stateDir: string, ...args: string[]): Promise<UnifyRun> {
  const r = await vefs(stateDir, 'unify', '--json', ...args);
  if (r.code !== 0) throw new Error(`vefs unify ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return { ...r, report: JSON.parse(r.stdout) as UnifyReport };
}

export const inodeOf = (p: string): bigint => fs.lstatSync(p, { bigint: true }).ino;
export const nlinkOf = (p: string): number => fs.lstatSync(p).nlink;

/** The immutable flag as lsattr shows it. */
export function lsattrImmutable(p: string): boolean {
  const flags = execFileSync('lsattr', ['-d', p], { encoding: 'utf8' }).split(/\s+/)[0]!;
  return flags.includes('i');
}

/** The same through the addon, for many files at once. */
export function immutable(p: string): boolean {
  const fd = native.openat(C.AT_FDCWD, p, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK, 0);
  try {
    return (native.getflags(fd) & C.FS_IMMUTABLE_FL) !== 0;
  } finally {
    native.close(fd);
  }
}

/** Regular files below dir, relative, sorted. */
export function filesBelow(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesBelow(dir, r));
    else if (e.isFile()) out.push(r);
  }
  return out.sort();
}

/** Temporary names a unify run leaves while it works (and a killed run leaves behind). */
export const isUnifyTemp = (name: string): boolean => /^\.vefs-unify\./.test(name);

function xattrsOf(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of native.llistxattr(p).sort()) out[name] = (native.lgetxattr(p, name) ?? Buffer.alloc(0)).toString('hex');
  return out;
}

/**
 * Path → what a VE sees of it, for every name below each root (unify's
 * temporary names left out: a killed run may leave some, the next run removes them).
 */
export function manifest(roots: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    const entry: Record<string, unknown> = { mode: st.mode.toString(8), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: String(st.mtimeNs), xattrs: xattrsOf(p) };
    if (st.isFile()) {
      entry.size = Number(st.size);
      entry.sha = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    } else if (st.isSymbolicLink()) entry.target = fs.readlinkSync(p);
    else if (st.isDirectory()) {
      // A directory's mtime moves whenever a name in it is replaced: that is the rename, not a change a VE made.
      delete entry.mtimeNs;
      for (const name of fs.readdirSync(p).sort()) if (!isUnifyTemp(name)) walk(path.join(p, name));
    }
    out.set(p, JSON.stringify(entry));
  };
  for (const r of roots) walk(r);
  return out;
}

/** The paths whose manifest entries differ, with both sides. */
export function manifestDiff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, v] of a) if (b.get(p) !== v) out.push(`${p}: ${v} -> ${b.get(p) ?? 'missing'}`);
  for (const p of b.keys()) if (!a.has(p)) out.push(`${p}: new`);
  return out;
}

/** Every regular file below the roots: shared inodes carry the flag, private ones do not. */
export function flagProblems(roots: string[]): string[] {
  const problems: string[] = [];
  for (const r of roots) {
    for (const f of filesBelow(r)) {
      const p = path.join(r, f);
      if (isUnifyTemp(path.basename(p))) {
        problems.push(`${p}: temporary name left`);
        continue;
      }
      const shared = nlinkOf(p) > 1;
      if (shared !== immutable(p)) problems.push(`${p}: nlink ${nlinkOf(p)} but ${immutable(p) ? '' : 'not '}immutable`);
    }
  }
  return problems;
}
