// The index's questions about content: which inodes need a hash, and which
// names may share one inode (groups). Everything is asked in pages, so
// millions of files are never in memory at once.
import type Database from 'better-sqlite3';
import { i64, u64, type UnifyIndex } from './index.js';
import type { PlanInode } from './plan.js';

export interface PendingFile {
  root: number; rel: string; name: string;
  dev: bigint; ino: bigint; size: number; mtimeSec: number; mtimeNsec: number;
}

export interface GroupKey {
  rowid: number; dev: bigint; size: number; hash: Buffer; mode: number; uid: number; gid: number; xattrs: Buffer;
  mtimeSec: number | null; mtimeNsec: number | null; names: number; inodes: number;
}

export interface Member {
  id: number; dir: number; root: number; rel: string; name: string; ino: bigint; nlink: number;
  mtimeSec: number; mtimeNsec: number; template: boolean;
}

/** An inode of a group and its first name: group rowid, ino, nlink, mtime s, ns, names in the run, template, sealed, name id, dir, name. */
type InodeRow = [number, string, number, number, number, number, number, number, number, number, string];

type KeyRow = [number, string, number, Buffer, number, number, number, Buffer, number | null, number | null, number, number];

/** Where a directory is, for this run: null when its ROOT is not one of the run's. */
type DirPlace = { root: number; rel: string; template: boolean } | null;

/** Directories remembered by GroupQueries before it starts over (~100 bytes each). */
const DIRS_KEPT = 100_000;

export interface Group {
  key: GroupKey;
  inodes: PlanInode[];
}

// The names of inode i under this run's ROOTs. CROSS JOIN fixes the order (inode, then its names by
// files_inode): without statistics SQLite may otherwise walk every name of the device for each inode.
const IN_RUN = (i: string, f: string, d: string, r: string) =>
  `CROSS JOIN files ${f} ON ${f}.dev = ${i}.dev AND ${f}.ino = ${i}.ino CROSS JOIN dirs ${d} ON ${d}.id = ${f}.dir
   CROSS JOIN run_roots ${r} ON ${r}.root = ${d}.root`;

// Inodes of this run without a hash whose size another inode of the run shares: a file of a size nobody
// else has is never read.
const PENDING = `FROM inodes i ${IN_RUN('i', 'f', 'd', 'r')}
  WHERE i.hash IS NULL AND i.kind = 0
    AND EXISTS (SELECT 1 FROM inodes j INDEXED BY inodes_content ${IN_RUN('j', 'g', 'e', 's')}
                WHERE j.dev = i.dev AND j.size = i.size AND j.ino != i.ino AND j.kind = 0)`;

export class GroupQueries {
  private readonly db: Database.Database;
  private readonly st;
  private keys: Database.Statement | null = null;
  private inodes: Database.Statement | null = null;
  private names: Database.Statement | null = null;
  // Directories are looked up once each, not joined into every row: a page's names are in a few hundred.
  private readonly dirs = new Map<number, DirPlace>();
  private readonly dirPlace: Database.Statement;

  constructor(index: UnifyIndex) {
    this.db = index.db;
    this.st = {
      pending: this.db.prepare(`SELECT i.dev, i.ino, i.size, i.mtime_s, i.mtime_ns, d.root, d.rel, f.name ${PENDING}
        AND (i.dev, i.ino) > (?, ?) GROUP BY i.dev, i.ino ORDER BY i.dev, i.ino LIMIT ?`).safeIntegers(true),
      setHash: this.db.prepare(`UPDATE inodes SET hash = ? WHERE dev = ? AND ino = ? AND size = ? AND mtime_s = ? AND mtime_ns = ?`),
    };
    this.dirPlace = this.db.prepare(`SELECT d.root, d.rel, r.template FROM dirs d JOIN run_roots r ON r.root = d.root WHERE d.id = ?`).raw();
  }

  /** A page of inodes to hash, each with one of its names, after the inode (dev, ino). */
  pending(after: [bigint, bigint], limit: number): PendingFile[] {
    const rows = this.st.pending.all(i64(after[0]), i64(after[1]), limit) as Record<string, bigint | string>[];
    return rows.map((r) => ({
      root: Number(r.root), rel: r.rel as string, name: r.name as string, dev: u64(r.dev as bigint), ino: u64(r.ino as bigint),
      size: Number(r.size), mtimeSec: Number(r.mtime_s), mtimeNsec: Number(r.mtime_ns),
    }));
  }

  /** What hashing will read, for a progress bar. */
  pendingBytes(): number {
    return this.db.prepare(`SELECT COALESCE(SUM(size), 0) FROM (SELECT i.size ${PENDING} GROUP BY i.dev, i.ino)`).pluck().get() as number;
  }

  /** The inode gets the hash as long as it is still the version that was read. */
  setHash(f: PendingFile, hash: Buffer): void {
    this.st.setHash.run(hash, i64(f.dev), i64(f.ino), f.size, f.mtimeSec, f.mtimeNsec);
  }

  /**
   * Sorts this run's hashed inodes into groups of names that may share one
   * inode (same filesystem, size, hash, mode, owner, group, xattrs, and
   * mtime unless ignored) and answers how many groups there are and how many
   * names already share an inode with another name of their group.
   */
  build(ignoreMtime: boolean): { groups: number; alreadyLinked: number } {
    const key = 'dev, size, hash, mode, uid, gid, xattrs, key_s, key_ns';
    this.db.exec(`DROP TABLE IF EXISTS temp.grp; DROP TABLE IF EXISTS temp.grp_inodes; DROP TABLE IF EXISTS temp.grp_members`);
    // One row per inode with its names in the run (MIN(f.id) makes f's bare columns its first name's), the
    // groups over those, then the inodes of the groups to link by group: pages read them without joining
    // names again (a new VE's groups are mostly one unified inode of eight names and one new file).
    this.db.exec(`CREATE TEMP TABLE grp_inodes AS
      SELECT i.dev, i.size, i.hash, i.mode, i.uid, i.gid, i.xattrs, ${ignoreMtime ? 'NULL AS key_s, NULL AS key_ns' : 'i.mtime_s AS key_s, i.mtime_ns AS key_ns'},
        i.ino, i.nlink, i.mtime_s, i.mtime_ns, i.sealed, COUNT(*) AS names, MAX(r.template) AS template, MIN(f.id) AS first, f.dir, f.name
      FROM inodes i ${IN_RUN('i', 'f', 'd', 'r')}
      WHERE i.hash IS NOT NULL AND i.kind = 0
      GROUP BY i.dev, i.ino`);
    this.db.exec(`CREATE TEMP TABLE grp AS SELECT ${key}, SUM(names) AS names, COUNT(*) AS inodes
      FROM grp_inodes GROUP BY ${key} HAVING SUM(names) > 1`);
    this.db.exec(`CREATE TEMP TABLE grp_members AS
      SELECT g.rowid AS grp, CAST(i.ino AS TEXT) AS ino, i.nlink, i.mtime_s, i.mtime_ns, i.names, i.template, i.sealed, i.first, i.dir, i.name
      FROM grp g JOIN grp_inodes i ON i.dev = g.dev AND i.size = g.size AND i.hash = g.hash AND i.mode = g.mode AND i.uid = g.uid
        AND i.gid = g.gid AND i.xattrs = g.xattrs AND i.key_s IS g.key_s AND i.key_ns IS g.key_ns
      WHERE g.inodes > 1 ORDER BY g.rowid`);
    this.db.exec(`CREATE INDEX temp.grp_members_grp ON grp_members(grp)`);
    const t = this.db.prepare(`SELECT COUNT(*) AS groups, COALESCE(SUM(names - inodes), 0) AS already FROM grp`).get() as
      { groups: number; already: number };
    return { groups: t.groups, alreadyLinked: t.already };
  }

  /** How many groups have more than one inode: the ones to link. */
  toLinkCount(): number {
    return this.db.prepare(`SELECT COUNT(*) FROM grp WHERE inodes > 1`).pluck().get() as number;
  }

  /**
   * The next groups with more than one inode, after group rowid `after`:
   * each inode with its first name and how many names it has in the run
   * (a target's other names, rarely any, come from allNames).
   */
  page(after: number, limit: number): Group[] {
    // Prepared once the tables exist (build()). Rows as arrays: a page is thousands of rows.
    this.keys ??= this.db.prepare(`SELECT rowid, CAST(dev AS TEXT), size, hash, mode, uid, gid, xattrs, key_s, key_ns, names, inodes
      FROM grp WHERE inodes > 1 AND rowid > ? ORDER BY rowid LIMIT ?`).raw();
    const keys = (this.keys.all(after, limit) as KeyRow[]).map(([rowid, dev, size, hash, mode, uid, gid, xattrs, mtimeSec, mtimeNsec, names, inodes]): GroupKey =>
      ({ rowid, dev: u64(BigInt(dev)), size, hash, mode, uid, gid, xattrs, mtimeSec, mtimeNsec, names, inodes }));
    if (keys.length === 0) return [];
    const groups = new Map<number, Group>(keys.map((key) => [key.rowid, { key, inodes: [] }]));
    this.inodes ??= this.db.prepare(`SELECT grp, ino, nlink, mtime_s, mtime_ns, names, template, sealed, first, dir, name
      FROM grp_members WHERE grp BETWEEN ? AND ?`).raw();
    const rows = this.inodes.all(keys[0]!.rowid, keys[keys.length - 1]!.rowid) as InodeRow[];
    if (this.dirs.size > DIRS_KEPT) this.dirs.clear();
    for (const [gid, ino, nlink, mtimeSec, mtimeNsec, count, template, sealed, id, dir, name] of rows) {
      const i = u64(BigInt(ino));
      groups.get(gid)!.inodes.push({ ino: i, nlink, count, template: template === 1, sealed: sealed === 1,
        names: [this.member(id, dir, name, i, nlink, mtimeSec, mtimeNsec)] });
    }
    return [...groups.values()];
  }

  /** Gives an inode planned as a target all its names in the run (page() gave it the first). */
  allNames(dev: bigint, inode: PlanInode): void {
    if (inode.names.length === inode.count) return;
    this.names ??= this.db.prepare(`SELECT f.id, f.dir, f.name FROM files f WHERE f.dev = ? AND f.ino = ? ORDER BY f.id`).raw();
    const first = inode.names[0]!;
    inode.names = (this.names.all(i64(dev), i64(inode.ino)) as [number, number, string][])
      .filter(([, dir]) => this.place(dir) !== null)
      .map(([id, dir, name]) => this.member(id, dir, name, inode.ino, inode.nlink, first.mtimeSec, first.mtimeNsec));
  }

  private member(id: number, dir: number, name: string, ino: bigint, nlink: number, mtimeSec: number, mtimeNsec: number): Member {
    const place = this.place(dir)!;
    return { id, dir, root: place.root, rel: place.rel, name, ino, nlink, mtimeSec, mtimeNsec, template: place.template };
  }

  private place(dir: number): DirPlace {
    let place = this.dirs.get(dir);
    if (place === undefined) {
      const row = this.dirPlace.get(dir) as [number, string, number] | undefined;
      place = row === undefined ? null : { root: row[0], rel: row[1], template: row[2] === 1 };
      this.dirs.set(dir, place);
    }
    return place;
  }
}
