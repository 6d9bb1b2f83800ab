// A comparable record of everything below a directory, and a readable diff of
// two such records. Used on merged views, private trees and template layers.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface Entry {
  /** Relative to the snapshot root; the root itself is '.'. */
  path: string;
  type: NodeType;
  /** Permission bits including setuid/setgid/sticky, as octal. */
  mode: string;
  uid: number;
  gid: number;
  /**
   * Omitted for directories: their st_size is the backing filesystem's block
   * accounting, not something a program can rely on.
   */
  size?: number;
  sha256?: string;
  target?: string;
  /** major:minor of a device node. */
  rdev?: string;
  /** name → value in hex, names sorted. */
  xattrs: Record<string, string>;
  /** Other paths of this snapshot that are the same inode (hard links). */
  links?: string[];
  mtimeNs: string;
  atimeNs?: string;
  ctimeNs?: string;
}

export interface Snapshot {
  root: string;
  entries: Entry[];
}

export interface SnapshotOptions {
  withAtime?: boolean;
  withCtime?: boolean;
  /** Leave out trusted.overlay.* (the upper-dir format's own bookkeeping). */
  dropOverlayXattrs?: boolean;
}

export function typeOf(st: fs.Stats | fs.BigIntStats): NodeType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

// O_NOATIME so that snapshotting a template does not itself change the atimes
// a later snapshot compares.
function sha256Of(p: string): string {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME);
  try {
    const hash = crypto.createHash('sha256');
    const buf = Buffer.alloc(1 << 16);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
    return hash.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

function unescapeGetfattr(s: string): string {
  return Buffer.from(s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1').toString('utf8');
}

/**
 * Every xattr of every path, via getfattr -h (never follows a final symlink).
 * Paths are passed in batches to stay far from the argument-length limit.
 */
function readXattrs(paths: string[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (let i = 0; i < paths.length; i += 200) {
    const batch = paths.slice(i, i + 200);
    let text: string;
    try {
      text = execFileSync('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', '-h', '--', ...batch],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`getfattr failed on ${batch.length} paths starting at ${batch[0]}: ${e.stderr ?? e.message}`);
    }
    let current: Record<string, string> | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith('# file: ')) {
        current = {};
        out.set(unescapeGetfattr(line.slice('# file: '.length)), current);
      } else if (line !== '' && current !== undefined) {
        const eq = line.indexOf('=');
        const name = eq < 0 ? line : line.slice(0, eq);
        // getfattr prints an empty value as a bare name, any other as 0x…
        const value = eq < 0 ? '' : line.slice(eq + 1).replace(/^0x/, '');
        current[name] = value;
      }
    }
  }
  return out;
}

function readlinkIfSymlink(p: string): string | undefined {
  return fs.lstatSync(p).isSymbolicLink() ? fs.readlinkSync(p) : undefined;
}

function walk(root: string, rel: string, acc: string[]): void {
  acc.push(rel);
  const abs = rel === '.' ? root : path.join(root, rel);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch (err) {
    throw new Error(`readdir lists ${abs} but lstat fails: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) return;
  for (const name of fs.readdirSync(abs).sort()) walk(root, rel === '.' ? name : `${rel}/${name}`, acc);
}

export function snapshotTree(root: string, opts: SnapshotOptions = {}): Snapshot {
  const rels: string[] = [];
  walk(root, '.', rels);
  const abs = (rel: string): string => (rel === '.' ? root : path.join(root, rel));
  const xattrs = readXattrs(rels.map(abs));
  const byInode = new Map<string, string[]>();
  const entries = rels.map((rel): Entry => {
    const p = abs(rel);
    // readlink may update the link's atime (there is no O_NOATIME for it), so
    // it goes before the lstat whose times are recorded.
    const target = readlinkIfSymlink(p);
    const st = fs.lstatSync(p, { bigint: true });
    const type = typeOf(st);
    const x: Record<string, string> = {};
    for (const [name, value] of Object.entries(xattrs.get(p) ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (!(opts.dropOverlayXattrs && name.startsWith('trusted.overlay.'))) x[name] = value;
    }
    const e: Entry = { path: rel, type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), xattrs: x, mtimeNs: String(st.mtimeNs) };
    if (type !== 'dir') e.size = Number(st.size);
    if (type === 'file') e.sha256 = sha256Of(p);
    if (target !== undefined) e.target = target;
    if (type === 'char' || type === 'block') {
      const rdev = Number(st.rdev);
      // glibc's encoding of dev_t.
      e.rdev = `${((rdev >>> 8) & 0xfff) | ((rdev / 2 ** 32) & ~0xfff)}:${(rdev & 0xff) | ((rdev >>> 12) & ~0xff)}`;
    }
    if (opts.withAtime) e.atimeNs = String(st.atimeNs);
    if (opts.withCtime) e.ctimeNs = String(st.ctimeNs);
    if (type !== 'dir' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      byInode.set(key, [...(byInode.get(key) ?? []), rel]);
    }
    return e;
  });
  for (const group of byInode.values()) {
    if (group.length < 2) continue;
    for (const rel of group) entries.find((e) => e.path === rel)!.links = group.filter((g) => g !== rel);
  }
  return { root, entries };
}

const FIELDS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'links', 'mtimeNs', 'atimeNs', 'ctimeNs'] as const;
export type Field = typeof FIELDS[number];

export interface DiffOptions {
  /** Fields to leave out of the comparison for particular paths. */
  ignore?: (path: string, field: Field) => boolean;
}

/** Differences, one per line, naming the path, the field and both values; empty when equal. */
export function diffSnapshots(a: Snapshot, b: Snapshot, opts: DiffOptions = {}): string[] {
  const out: string[] = [];
  const am = new Map(a.entries.map((e) => [e.path, e]));
  const bm = new Map(b.entries.map((e) => [e.path, e]));
  for (const [p, ea] of am) {
    const eb = bm.get(p);
    if (eb === undefined) {
      out.push(`${p}: only in ${a.root} (${ea.type})`);
      continue;
    }
    for (const f of FIELDS) {
      if (opts.ignore?.(p, f)) continue;
      const va = JSON.stringify(ea[f]);
      const vb = JSON.stringify(eb[f]);
      if (va !== vb) out.push(`${p}: ${f} ${va ?? 'absent'} in ${a.root} vs ${vb ?? 'absent'} in ${b.root}`);
    }
  }
  for (const [p, eb] of bm) if (!am.has(p)) out.push(`${p}: only in ${b.root} (${eb.type})`);
  return out;
}
