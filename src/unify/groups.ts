// The index's questions about content: which inodes need a hash, and which
// names may share one inode (groups). Everything is asked in pages, so
// millions of files are never in memory at once.
import type Database from 'better-sqlite3';
import { i64, u64, type UnifyIndex } from './index.js';

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

type MemberRow = [number, number, number, string, string, number, number, number];

/** Where a directory is, for this run: null when its ROOT is not one of the run's. */
type DirPlace = { root: number; rel: string; template: boolean } | null;

/** Directories remembered by GroupQueries before it starts over (~100 bytes each). */
const DIRS_KEPT = 100_000;

export interface Group {
  key: GroupKey;
  members: Member[];
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
  private members: Database.Statement | null = null;
  // The members' directories are looked up once each, not joined into every row: a new VE's page is
  // ~2,300 rows, eight in ten of them names of the same unified inodes, in a few hundred directories.
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
    const mtime = ignoreMtime ? 'NULL AS mtime_s, NULL AS mtime_ns' : 'i.mtime_s, i.mtime_ns';
    const by = ignoreMtime ? '' : ', i.mtime_s, i.mtime_ns';
    this.db.exec(`DROP TABLE IF EXISTS temp.grp`);
    this.db.exec(`CREATE TEMP TABLE grp AS
      SELECT i.dev, i.size, i.hash, i.mode, i.uid, i.gid, i.xattrs, ${mtime}, COUNT(*) AS names, COUNT(DISTINCT i.ino) AS inodes
      FROM inodes i ${IN_RUN('i', 'f', 'd', 'r')}
      WHERE i.hash IS NOT NULL AND i.kind = 0
      GROUP BY i.dev, i.size, i.hash, i.mode, i.uid, i.gid, i.xattrs${by}
      HAVING COUNT(*) > 1`);
    const t = this.db.prepare(`SELECT COUNT(*) AS groups, COALESCE(SUM(names - inodes), 0) AS already FROM grp`).get() as
      { groups: number; already: number };
    return { groups: t.groups, alreadyLinked: t.already };
  }

  /** How many groups have more than one inode: the ones to link. */
  toLinkCount(): number {
    return this.db.prepare(`SELECT COUNT(*) FROM grp WHERE inodes > 1`).pluck().get() as number;
  }

  /** The next groups with more than one inode, with their names, after group rowid `after`. */
  page(after: number, limit: number): Group[] {
    const keys = (this.db.prepare(`SELECT rowid, * FROM grp WHERE inodes > 1 AND rowid > ? ORDER BY rowid LIMIT ?`)
      .safeIntegers(true).all(after, limit) as Record<string, bigint | Buffer | null>[]).map((r): GroupKey => ({
      rowid: Number(r.rowid), dev: u64(r.dev as bigint), size: Number(r.size), hash: r.hash as Buffer,
      mode: Number(r.mode), uid: Number(r.uid), gid: Number(r.gid), xattrs: r.xattrs as Buffer,
      mtimeSec: r.mtime_s === null ? null : Number(r.mtime_s), mtimeNsec: r.mtime_ns === null ? null : Number(r.mtime_ns),
      names: Number(r.names), inodes: Number(r.inodes),
    }));
    if (keys.length === 0) return [];
    const groups = new Map<number, Group>(keys.map((key) => [key.rowid, { key, members: [] }]));
    // Rows as arrays: the members of a page are tens of thousands of rows. Prepared once grp exists (build()).
    this.members ??= this.db.prepare(`
      SELECT g.rowid AS gid, f.id, f.dir, f.name, CAST(i.ino AS TEXT), i.nlink, i.mtime_s, i.mtime_ns
      FROM grp g CROSS JOIN inodes i INDEXED BY inodes_content ON i.dev = g.dev AND i.size = g.size AND i.hash = g.hash
        AND i.mode = g.mode AND i.uid = g.uid AND i.gid = g.gid AND i.xattrs = g.xattrs AND i.kind = 0
        AND (g.mtime_s IS NULL OR (i.mtime_s = g.mtime_s AND i.mtime_ns = g.mtime_ns))
      CROSS JOIN files f ON f.dev = i.dev AND f.ino = i.ino
      WHERE g.inodes > 1 AND g.rowid BETWEEN ? AND ?`).raw();
    const rows = this.members.all(keys[0]!.rowid, keys[keys.length - 1]!.rowid) as MemberRow[];
    if (this.dirs.size > DIRS_KEPT) this.dirs.clear();
    for (const [gid, id, dir, name, ino, nlink, mtimeSec, mtimeNsec] of rows) {
      const place = this.place(dir);
      if (place !== null) groups.get(gid)!.members.push({ id, dir, root: place.root, rel: place.rel, name, ino: u64(BigInt(ino)), nlink, mtimeSec, mtimeNsec, template: place.template });
    }
    // In the order the names were indexed, whatever order the query met them in.
    for (const g of groups.values()) g.members.sort((a, b) => a.id - b.id);
    return [...groups.values()];
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
