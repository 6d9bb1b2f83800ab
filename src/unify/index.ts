// The unify index: one SQLite database (WAL) that remembers, per path, the
// inode seen there and its content hash, so a rerun reads no content and a
// new VE costs only its own files.
//
// A file's hash stays valid while (dev, ino, size, mtime) do: content cannot
// change without changing mtime (the kernel's multigrain timestamps make even
// two writes in one tick visible once the file was stat'ed). ctime is no key,
// since linking and chattr change it on every unified inode; a changed ctime
// only means the xattrs are read again. Nothing here is trusted for linking:
// link.ts checks the live file before every link.
//
// Paths are stored as (dir, name) below a ROOT, so one query per directory
// brings back what the last run saw there. Rows of ROOTs that a run was not
// given stay, untouched, for a later run that names them again.
import Database from 'better-sqlite3';
import type { Replaced } from './link.js';
import type { DirVisit, FileStat } from './scan.js';
import type { Root } from './roots.js';
import type { XattrFacts } from './xattrs.js';

const SCHEMA_VERSION = 1;

/** The kind of a file row: may be unified, or never (its bytes are not its content). */
export const enum Kind { Eligible = 0, Metacopy = 1 }

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS roots(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS dirs(id INTEGER PRIMARY KEY, root INTEGER NOT NULL, rel TEXT NOT NULL, UNIQUE(root, rel));
CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, dir INTEGER NOT NULL, name TEXT NOT NULL,
  dev INTEGER NOT NULL, ino INTEGER NOT NULL, nlink INTEGER NOT NULL, size INTEGER NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
  kind INTEGER NOT NULL, xattrs BLOB NOT NULL, hash BLOB,
  -- The fields above as two strings, so that a rerun compares each file with one string comparison:
  -- content (dev:ino:size:mtime, what the hash depends on) and meta (ctime:nlink; a mode or owner change moves ctime).
  content TEXT NOT NULL, meta TEXT NOT NULL, UNIQUE(dir, name));
CREATE INDEX IF NOT EXISTS files_inode ON files(dev, ino);
CREATE INDEX IF NOT EXISTS files_size ON files(dev, size);
-- A path that unify replaced by a link, with the times it had: --revert gives
-- them back (they differ from the kept inode's under --ignore-mtime).
CREATE TABLE IF NOT EXISTS replaced(dir INTEGER NOT NULL, name TEXT NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
  PRIMARY KEY(dir, name));
-- Runs that started; one that never finished may have left temporary names.
CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started INTEGER NOT NULL, finished INTEGER);
`;

// Files of this run without a hash whose size another inode of the run shares.
const PENDING = `files f JOIN dirs d ON d.id = f.dir JOIN run_roots r ON r.root = d.root
  WHERE f.hash IS NULL AND f.kind = 0
    AND EXISTS (SELECT 1 FROM files g JOIN dirs e ON e.id = g.dir JOIN run_roots s ON s.root = e.root
                WHERE g.dev = f.dev AND g.size = f.size AND g.ino != f.ino AND g.kind = 0)`;

/** SQLite integers are signed 64-bit; device and inode numbers are unsigned. */
const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);
const u64 = (v: bigint | number): bigint => BigInt.asUintN(64, BigInt(v));

interface StoredFile {
  id: number;
  name: string;
  content: string;
  meta: string;
}

const contentStamp = (st: FileStat): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeSec}.${st.mtimeNsec}`;
const metaStamp = (st: FileStat): string => `${st.ctimeSec}.${st.ctimeNsec}:${st.nlink}`;

export interface PendingFile {
  id: number; root: number; rel: string; name: string;
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

export class UnifyIndex {
  readonly db: Database.Database;
  private readonly rootIds = new Map<string, number>();
  private ownBatch = false;
  private readonly st;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // A crash loses at most the last transactions, which only cost a rehash.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('temp_store = FILE');
    // Dirty pages stay in memory until a commit instead of spilling to the WAL midway; bounded, so RSS is too.
    this.db.pragma('cache_size = -32768');
    this.db.exec(SCHEMA);
    const version = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get();
    if (version === undefined) this.db.prepare(`INSERT INTO meta VALUES ('schema', ?)`).run(SCHEMA_VERSION);
    else if (version !== SCHEMA_VERSION) throw new Error(`unify index ${file} has schema ${version}, expected ${SCHEMA_VERSION}`);
    this.db.exec(`CREATE TEMP TABLE run_roots(root INTEGER PRIMARY KEY, template INTEGER NOT NULL)`);
    // The directories this run's walk reached; a temporary table, so a rerun writes nothing for them.
    this.db.exec(`CREATE TEMP TABLE visited(id INTEGER PRIMARY KEY)`);
    const db = this.db;
    this.st = {
      dir: db.prepare(`SELECT id FROM dirs WHERE root = ? AND rel = ?`).pluck(),
      addDir: db.prepare(`INSERT INTO dirs(root, rel) VALUES (?, ?)`),
      visited: db.prepare(`INSERT INTO temp.visited VALUES (?)`),
      files: db.prepare(`SELECT id, name, content, meta FROM files WHERE dir = ?`),
      add: db.prepare(`INSERT INTO files(dir, name, dev, ino, nlink, size, mode, uid, gid, mtime_s, mtime_ns, ctime_s, ctime_ns, kind, xattrs, content, meta)
        VALUES (@dir, @name, @dev, @ino, @nlink, @size, @mode, @uid, @gid, @mtime_s, @mtime_ns, @ctime_s, @ctime_ns, @kind, @xattrs, @content, @meta)`),
      replace: db.prepare(`UPDATE files SET dev = @dev, ino = @ino, nlink = @nlink, size = @size, mode = @mode, uid = @uid,
        gid = @gid, mtime_s = @mtime_s, mtime_ns = @mtime_ns, ctime_s = @ctime_s, ctime_ns = @ctime_ns, kind = @kind,
        xattrs = @xattrs, content = @content, meta = @meta, hash = NULL WHERE id = @id`),
      touch: db.prepare(`UPDATE files SET nlink = @nlink, mode = @mode, uid = @uid, gid = @gid, ctime_s = @ctime_s,
        ctime_ns = @ctime_ns, kind = @kind, xattrs = @xattrs, meta = @meta WHERE id = @id`),
      drop: db.prepare(`DELETE FROM files WHERE id = ?`),
      setHash: db.prepare(`UPDATE files SET hash = ? WHERE dev = ? AND ino = ? AND size = ? AND mtime_s = ? AND mtime_ns = ?`),
      relinked: db.prepare(`UPDATE files SET ino = ?, nlink = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?,
        content = ?, meta = ? WHERE id IN (SELECT value FROM json_each(?))`),
      members: new Map<boolean, Database.Statement>(),
    };
  }

  /** Folds the WAL into the database, so that the next run's first write does not pay for this run's. */
  close(): void {
    if (!this.db.inTransaction && !this.db.memory) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  /** Starts a run over these ROOTs: the only ones its queries see. */
  beginRun(roots: Root[]): void {
    this.db.exec(`DELETE FROM run_roots`);
    const addRoot = this.db.prepare(`INSERT INTO roots(path) VALUES (?) ON CONFLICT(path) DO UPDATE SET path = path RETURNING id`).pluck();
    for (const r of roots) {
      const id = addRoot.get(r.path) as number;
      this.rootIds.set(r.path, id);
      this.db.prepare(`INSERT INTO run_roots VALUES (?, ?)`).run(id, r.template ? 1 : 0);
    }
  }

  rootId(root: Root): number {
    const id = this.rootIds.get(root.path);
    if (id === undefined) throw new Error(`ROOT ${root.path} is not part of this run`);
    return id;
  }

  /** Groups writes into transactions of many directories; inside a dry run's outer transaction it does nothing. */
  batch(): void {
    if (!this.db.inTransaction) {
      this.db.exec('BEGIN');
      this.ownBatch = true;
    }
  }

  commit(): void {
    if (this.ownBatch) {
      this.db.exec('COMMIT');
      this.ownBatch = false;
    }
  }

  /**
   * Brings one directory's rows up to date with what the walk saw; xattrs are
   * read (through xattrsOf) only for new files and files whose ctime moved.
   * Answers how many rows changed.
   */
  syncDir(v: DirVisit, xattrsOf: (name: string) => XattrFacts): number {
    const rootId = this.rootId(v.root);
    const found = this.st.dir.get(rootId, v.rel) as number | undefined;
    const dir = found ?? Number(this.st.addDir.run(rootId, v.rel).lastInsertRowid);
    this.st.visited.run(dir);
    const stored = new Map<string, StoredFile>();
    if (found !== undefined) for (const row of this.st.files.all(dir) as StoredFile[]) stored.set(row.name, row);
    let changed = stored.size;
    for (const { name, st } of v.files) {
      const old = stored.get(name);
      stored.delete(name);
      if (old !== undefined && old.content === contentStamp(st)) {
        // Same version of the content; a moved ctime may mean other xattrs, mode or owner.
        if (old.meta !== metaStamp(st)) this.st.touch.run(this.row(dir, name, st, xattrsOf(name), old.id));
        else changed--;
        continue;
      }
      const row = this.row(dir, name, st, xattrsOf(name), old?.id);
      if (old === undefined) {
        this.st.add.run(row);
        changed++;
      } else this.st.replace.run(row);
    }
    for (const gone of stored.values()) this.st.drop.run(gone.id);
    return changed;
  }

  private row(dir: number, name: string, st: FileStat, x: XattrFacts, id?: number) {
    return {
      id, dir, name, dev: i64(st.dev), ino: i64(st.ino), nlink: st.nlink, size: st.size, mode: st.mode, uid: st.uid,
      gid: st.gid, mtime_s: st.mtimeSec, mtime_ns: st.mtimeNsec, ctime_s: st.ctimeSec, ctime_ns: st.ctimeNsec,
      kind: x.metacopy ? Kind.Metacopy : Kind.Eligible, xattrs: x.digest, content: contentStamp(st), meta: metaStamp(st),
    };
  }

  /** Forgets directories of this run's ROOTs that the walk no longer reached (removed, or excluded now). */
  pruneUnseen(): number {
    const stale = `SELECT id FROM dirs WHERE root IN (SELECT root FROM run_roots) AND id NOT IN (SELECT id FROM temp.visited)`;
    const n = this.db.prepare(`DELETE FROM files WHERE dir IN (${stale})`).run().changes;
    this.db.prepare(`DELETE FROM replaced WHERE dir IN (${stale})`).run();
    this.db.prepare(`DELETE FROM dirs WHERE id IN (${stale})`).run();
    return n;
  }

  /**
   * Files without a hash that need one: some other inode of this run has the
   * same size on the same filesystem. A file of a size nobody else has is
   * never read.
   */
  pending(afterId: number, limit: number): PendingFile[] {
    const rows = this.db.prepare(`
      SELECT f.id, d.root, d.rel, f.name, f.dev, f.ino, f.size, f.mtime_s, f.mtime_ns
      FROM ${PENDING} AND f.id > ? ORDER BY f.id LIMIT ?`).safeIntegers(true).all(afterId, limit) as Record<string, bigint | string>[];
    return rows.map((r) => ({
      id: Number(r.id), root: Number(r.root), rel: r.rel as string, name: r.name as string,
      dev: u64(r.dev as bigint), ino: u64(r.ino as bigint), size: Number(r.size),
      mtimeSec: Number(r.mtime_s), mtimeNsec: Number(r.mtime_ns),
    }));
  }

  /** What hashing will read, for a progress bar. */
  pendingBytes(): number {
    return this.db.prepare(`SELECT COALESCE(SUM(f.size), 0) FROM ${PENDING}`).pluck().get() as number;
  }

  /** Every name of the inode gets the hash, as long as it is still the version that was read. */
  setHash(f: PendingFile, hash: Buffer): void {
    this.st.setHash.run(hash, i64(f.dev), i64(f.ino), f.size, f.mtimeSec, f.mtimeNsec);
  }

  /**
   * Sorts this run's hashed files into groups of names that may share one
   * inode (same filesystem, size, hash, mode, owner, group, xattrs, and mtime
   * unless ignored) and answers how many groups there are and how many names
   * already share an inode with another name of their group.
   */
  buildGroups(ignoreMtime: boolean): { groups: number; alreadyLinked: number } {
    const mtime = ignoreMtime ? 'NULL AS mtime_s, NULL AS mtime_ns' : 'f.mtime_s, f.mtime_ns';
    const by = ignoreMtime ? '' : ', f.mtime_s, f.mtime_ns';
    this.db.exec(`DROP TABLE IF EXISTS temp.grp`);
    this.db.exec(`CREATE TEMP TABLE grp AS
      SELECT f.dev, f.size, f.hash, f.mode, f.uid, f.gid, f.xattrs, ${mtime},
        COUNT(*) AS names, COUNT(DISTINCT f.ino) AS inodes
      FROM files f JOIN dirs d ON d.id = f.dir JOIN run_roots r ON r.root = d.root
      WHERE f.hash IS NOT NULL AND f.kind = 0
      GROUP BY f.dev, f.size, f.hash, f.mode, f.uid, f.gid, f.xattrs${by}
      HAVING COUNT(*) > 1`);
    const t = this.db.prepare(`SELECT COUNT(*) AS groups, COALESCE(SUM(names - inodes), 0) AS already FROM grp`).get() as
      { groups: number; already: number };
    return { groups: t.groups, alreadyLinked: t.already };
  }

  /** Groups with more than one inode, in pages. */
  groupsToLink(afterRowid: number, limit: number): GroupKey[] {
    const rows = this.db.prepare(`SELECT rowid, * FROM grp WHERE inodes > 1 AND rowid > ? ORDER BY rowid LIMIT ?`)
      .safeIntegers(true).all(afterRowid, limit) as Record<string, bigint | Buffer | null>[];
    return rows.map((r) => ({
      rowid: Number(r.rowid), dev: u64(r.dev as bigint), size: Number(r.size), hash: r.hash as Buffer,
      mode: Number(r.mode), uid: Number(r.uid), gid: Number(r.gid), xattrs: r.xattrs as Buffer,
      mtimeSec: r.mtime_s === null ? null : Number(r.mtime_s), mtimeNsec: r.mtime_ns === null ? null : Number(r.mtime_ns),
      names: Number(r.names), inodes: Number(r.inodes),
    }));
  }

  groupsToLinkCount(): number {
    return this.db.prepare(`SELECT COUNT(*) FROM grp WHERE inodes > 1`).pluck().get() as number;
  }

  members(g: GroupKey): Member[] {
    const withMtime = g.mtimeSec !== null;
    let stmt = this.st.members.get(withMtime);
    if (stmt === undefined) {
      stmt = this.db.prepare(`
        SELECT f.id, f.dir, d.root, d.rel, f.name, f.ino, f.nlink, f.mtime_s, f.mtime_ns, r.template
        FROM files f JOIN dirs d ON d.id = f.dir JOIN run_roots r ON r.root = d.root
        WHERE f.hash = @hash AND f.dev = @dev AND f.size = @size AND f.mode = @mode AND f.uid = @uid AND f.gid = @gid
          AND f.xattrs = @xattrs AND f.kind = 0 ${withMtime ? 'AND f.mtime_s = @mtimeSec AND f.mtime_ns = @mtimeNsec' : ''}
        ORDER BY f.id`).safeIntegers(true);
      this.st.members.set(withMtime, stmt);
    }
    const params: Record<string, unknown> = { hash: g.hash, dev: i64(g.dev), size: g.size, mode: g.mode, uid: g.uid, gid: g.gid, xattrs: g.xattrs };
    if (withMtime) Object.assign(params, { mtimeSec: g.mtimeSec, mtimeNsec: g.mtimeNsec });
    return (stmt.all(params) as Record<string, bigint | string>[]).map((r) => ({
      id: Number(r.id), dir: Number(r.dir), root: Number(r.root), rel: r.rel as string, name: r.name as string,
      ino: u64(r.ino as bigint), nlink: Number(r.nlink), mtimeSec: Number(r.mtime_s), mtimeNsec: Number(r.mtime_ns),
      template: r.template === 1n,
    }));
  }

  /** After a group was linked: these names now show the kept inode. */
  relinked(ids: number[], st: FileStat): void {
    this.st.relinked.run(i64(st.ino), st.nlink, st.mtimeSec, st.mtimeNsec, st.ctimeSec, st.ctimeNsec, contentStamp(st), metaStamp(st),
      JSON.stringify(ids));
  }

  /** Replaced names keep the times they had, for --revert. */
  rememberReplaced(replaced: Replaced[]): void {
    const remember = this.db.prepare(`INSERT INTO replaced VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT(dir, name) DO UPDATE SET mtime_s = excluded.mtime_s, mtime_ns = excluded.mtime_ns,
        atime_s = excluded.atime_s, atime_ns = excluded.atime_ns`);
    this.db.transaction(() => {
      for (const r of replaced) remember.run(r.dir, r.name, r.mtimeSec, r.mtimeNsec, r.atimeSec, r.atimeNsec);
    })();
  }

  /** The times a path had before unify replaced it, if it did. */
  replacedTimes(root: number, rel: string, name: string): { mtimeSec: number; mtimeNsec: number; atimeSec: number; atimeNsec: number } | undefined {
    const r = this.db.prepare(`SELECT p.mtime_s, p.mtime_ns, p.atime_s, p.atime_ns FROM replaced p JOIN dirs d ON d.id = p.dir
      WHERE d.root = ? AND d.rel = ? AND p.name = ?`).get(root, rel, name) as Record<string, number> | undefined;
    return r && { mtimeSec: r.mtime_s!, mtimeNsec: r.mtime_ns!, atimeSec: r.atime_s!, atimeNsec: r.atime_ns! };
  }

  /** A path got its own inode back: forget it was replaced, and drop its row so the next run looks afresh. */
  reverted(root: number, rel: string, name: string): void {
    const dir = this.db.prepare(`SELECT id FROM dirs WHERE root = ? AND rel = ?`).pluck().get(root, rel) as number | undefined;
    if (dir === undefined) return;
    this.db.prepare(`DELETE FROM replaced WHERE dir = ? AND name = ?`).run(dir, name);
    this.db.prepare(`DELETE FROM files WHERE dir = ? AND name = ?`).run(dir, name);
  }

  /**
   * What a run that left nothing to do recorded: with the same ROOTs and
   * options (sig) and nothing changed since, the next run need not group.
   */
  settled(sig: string): { groups: number; alreadyLinked: number } | null {
    const v = this.db.prepare(`SELECT value FROM meta WHERE key = 'settled'`).pluck().get() as string | undefined;
    if (v === undefined) return null;
    const r = JSON.parse(v) as { sig: string; groups: number; alreadyLinked: number };
    return r.sig === sig ? r : null;
  }

  setSettled(value: { sig: string; groups: number; alreadyLinked: number } | null): void {
    if (value === null) this.db.prepare(`DELETE FROM meta WHERE key = 'settled'`).run();
    else this.db.prepare(`INSERT OR REPLACE INTO meta VALUES ('settled', ?)`).run(JSON.stringify(value));
  }

  startRun(id: string): void {
    this.db.prepare(`INSERT INTO runs VALUES (?, ?, ?, NULL)`).run(id, process.pid, Date.now());
  }

  finishRun(id: string): void {
    this.db.prepare(`UPDATE runs SET finished = ? WHERE id = ?`).run(Date.now(), id);
  }

  /** Runs that never finished: their temporary names are leftovers. */
  unfinishedRuns(current: string): Set<string> {
    const ids = this.db.prepare(`SELECT id FROM runs WHERE finished IS NULL AND id != ?`).pluck().all(current) as string[];
    return new Set(ids);
  }
}
