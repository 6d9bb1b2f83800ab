// The unify index: one SQLite database (WAL) that remembers what the last
// runs saw, so that a rerun reads no content and a new VE costs only its
// own files.
//
//   files   a name below a ROOT, as (dir, name), and the inode it showed
//   inodes  that inode as last seen (size, mode, owner, xattrs digest,
//           times, link count) and its content hash
//
// An inode's hash stays valid while (dev, ino, size, mtime) do: content
// cannot change without changing mtime (the kernel's multigrain timestamps
// make even two writes in one tick visible once the file was stat'ed).
// ctime is no key, since linking and chattr change it on every unified
// inode; a changed ctime only means the xattrs are read again. Keeping the
// inode apart from its names makes linking cheap to record: a new name of a
// kept inode is one row, not an update of all its names. Nothing here is
// trusted for linking: link.ts checks the live file before every link.
//
// Rows of ROOTs that a run was not given stay, untouched, for a later run
// that names them again. Group queries are in groups.ts.
import Database from 'better-sqlite3';
import type { Replaced } from './link.js';
import type { DirVisit, FileStat, KnownDir, Recalled } from './scan.js';
import type { Root } from './roots.js';
import type { XattrFacts } from './xattrs.js';

const SCHEMA_VERSION = 4;
const COMMIT_EVERY_MS = 3000;

/** The kind of an inode: may be unified, or never (its bytes are not its content). */
const enum Kind { Eligible = 0, Metacopy = 1 }

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS roots(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
-- stamp: the directory's inode, mtime and ctime when the last walk listed it (scan.ts dirStamp); loose: how
-- many of its regular files that walk did not index though it did not exclude them (scan.ts DirVisit).
CREATE TABLE IF NOT EXISTS dirs(id INTEGER PRIMARY KEY, root INTEGER NOT NULL, rel TEXT NOT NULL, stamp TEXT,
  loose INTEGER NOT NULL DEFAULT 1, UNIQUE(root, rel));
CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, dir INTEGER NOT NULL, name TEXT NOT NULL,
  dev INTEGER NOT NULL, ino INTEGER NOT NULL, UNIQUE(dir, name));
CREATE INDEX IF NOT EXISTS files_inode ON files(dev, ino);
-- content: dev:ino:size:mtime, what the hash depends on; meta: ctime:nlink (a mode, owner or xattr change
-- moves ctime). A rerun compares each name with these two strings. sealed: the inode carried the immutable
-- flag when last seen (scan.ts trusts its names while their directory is unchanged).
CREATE TABLE IF NOT EXISTS inodes(dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, nlink INTEGER NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, kind INTEGER NOT NULL, xattrs BLOB NOT NULL, hash BLOB,
  content TEXT NOT NULL, meta TEXT NOT NULL, sealed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(dev, ino)) WITHOUT ROWID;
-- Sizes for the hashing query, size and hash for the groups' members (groups.ts).
CREATE INDEX IF NOT EXISTS inodes_content ON inodes(dev, size, hash);
-- A name that unify replaced by a link while its own mtime differed (--ignore-mtime): --revert gives the
-- times back.
CREATE TABLE IF NOT EXISTS replaced(dir INTEGER NOT NULL, name TEXT NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
  PRIMARY KEY(dir, name));
-- Runs that started; one that never finished may have left temporary names.
CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started INTEGER NOT NULL, finished INTEGER);
`;

/** SQLite integers are signed 64-bit; device and inode numbers are unsigned. */
export const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);
export const u64 = (v: bigint | number): bigint => BigInt.asUintN(64, BigInt(v));

export const contentStamp = (st: FileStat): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeSec}.${st.mtimeNsec}`;
const metaStamp = (st: Pick<FileStat, 'ctimeSec' | 'ctimeNsec' | 'nlink'>): string => `${st.ctimeSec}.${st.ctimeNsec}:${st.nlink}`;

interface StoredName {
  id: number;
  name: string;
  content: string | null;
  meta: string | null;
  sealed: number | null;
  size: number | null;
}

/** A directory as the index knows it: recall() reads it for the walk, syncDir() uses it again. */
interface DirRecord {
  root: number;
  rel: string;
  id: number;
  stamp: string | null;
  loose: number;
  names: Map<string, StoredName>;
}

export class UnifyIndex {
  readonly db: Database.Database;
  private readonly rootIds = new Map<string, number>();
  private ownBatch = false;
  private recalled: DirRecord | null = null;
  private batchStarted = 0;
  private readonly st;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // A crash loses at most the last transactions, which only cost a rehash.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('temp_store = FILE');
    // Dirty pages stay in memory until a commit instead of spilling to the WAL midway (a transaction lasts
    // seconds, commitIfDue, and a spilled page that is changed again is written again); bounded, so RSS is too.
    this.db.pragma('cache_size = -24576');
    const version = this.db.prepare(`PRAGMA user_version`).pluck().get() as number;
    const empty = this.db.prepare(`SELECT COUNT(*) FROM sqlite_master`).pluck().get() === 0;
    // Schemas 3 and 4 add what lets a rerun skip statx calls and directories; an older index simply has none of it yet.
    const upgrades: Record<number, string> = {
      2: `ALTER TABLE dirs ADD COLUMN stamp TEXT; ALTER TABLE inodes ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0; DROP INDEX inodes_size;`,
      3: `ALTER TABLE dirs ADD COLUMN loose INTEGER NOT NULL DEFAULT 1;`,
    };
    if (empty) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    else if (upgrades[version] !== undefined) {
      for (let v = version; v < SCHEMA_VERSION; v++) this.db.exec(upgrades[v]!);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } else if (version !== SCHEMA_VERSION) {
      throw new Error(`unify index ${file} has schema ${version}, this vefs uses ${SCHEMA_VERSION}: remove it (the next run rebuilds it)`);
    }
    this.db.exec(SCHEMA);
    this.db.exec(`CREATE TEMP TABLE run_roots(root INTEGER PRIMARY KEY, template INTEGER NOT NULL)`);
    // The directories this run's walk reached; a temporary table, so a rerun writes nothing for them.
    this.db.exec(`CREATE TEMP TABLE visited(id INTEGER PRIMARY KEY)`);
    // Inodes that lost a name this run: dropped at the end unless another name still shows them.
    this.db.exec(`CREATE TEMP TABLE orphans(dev INTEGER NOT NULL, ino INTEGER NOT NULL)`);
    const db = this.db;
    this.st = {
      dirRow: db.prepare(`SELECT id, stamp, loose FROM dirs WHERE root = ? AND rel = ?`),
      setStamp: db.prepare(`UPDATE dirs SET stamp = ?, loose = ? WHERE id = ?`),
      restamp: db.prepare(`UPDATE dirs SET stamp = ? WHERE id = ? AND stamp = ?`),
      addDir: db.prepare(`INSERT INTO dirs(root, rel) VALUES (?, ?)`),
      visited: db.prepare(`INSERT INTO temp.visited VALUES (?)`),
      names: db.prepare(`SELECT f.id, f.name, i.content, i.meta, i.sealed, i.size FROM files f
        LEFT JOIN inodes i ON i.dev = f.dev AND i.ino = f.ino WHERE f.dir = ?`),
      inode: db.prepare(`SELECT content, meta, sealed FROM inodes WHERE dev = ? AND ino = ?`),
      addInode: db.prepare(`INSERT INTO inodes VALUES
        (@dev, @ino, @size, @mode, @uid, @gid, @nlink, @mtime_s, @mtime_ns, @kind, @xattrs, NULL, @content, @meta, @sealed)`),
      newContent: db.prepare(`UPDATE inodes SET size = @size, mode = @mode, uid = @uid, gid = @gid, nlink = @nlink,
        mtime_s = @mtime_s, mtime_ns = @mtime_ns, kind = @kind, xattrs = @xattrs, hash = NULL, content = @content, meta = @meta,
        sealed = @sealed WHERE dev = @dev AND ino = @ino`),
      newMeta: db.prepare(`UPDATE inodes SET mode = @mode, uid = @uid, gid = @gid, nlink = @nlink, kind = @kind,
        xattrs = @xattrs, meta = @meta, sealed = @sealed WHERE dev = @dev AND ino = @ino`),
      addName: db.prepare(`INSERT INTO files(dir, name, dev, ino) VALUES (?, ?, ?, ?)`),
      repoint: db.prepare(`UPDATE files SET dev = ?, ino = ? WHERE id = ?`),
      orphan: db.prepare(`INSERT INTO temp.orphans SELECT dev, ino FROM files WHERE id = ?`),
      dropName: db.prepare(`DELETE FROM files WHERE id = ?`),
      relinkName: db.prepare(`UPDATE files SET dev = ?, ino = ? WHERE id = ?`),
      relinkInode: db.prepare(`UPDATE inodes SET nlink = ?, meta = ?, sealed = ? WHERE dev = ? AND ino = ?`),
      dropInode: db.prepare(`DELETE FROM inodes WHERE dev = ? AND ino = ?`),
      remember: db.prepare(`INSERT INTO replaced VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(dir, name) DO UPDATE SET mtime_s = excluded.mtime_s, mtime_ns = excluded.mtime_ns,
          atime_s = excluded.atime_s, atime_ns = excluded.atime_ns`),
    };
  }

  /** Folds the WAL into the database, so that the next run's first write does not pay for this run's. */
  close(): void {
    if (!this.db.inTransaction && !this.db.memory) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  /** Starts a run over these ROOTs: the only ones its queries see. */
  beginRun(roots: Root[]): void {
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
      this.batchStarted = performance.now();
    }
  }

  /**
   * Commits the batch once it is a few seconds old and starts the next. Each commit writes every
   * page it touched to the WAL, and a run's updates are spread over the whole
   * index, so frequent commits rewrite the index many times over; a kill loses
   * at most these seconds of updates, which the next run's walk finds again.
   */
  commitIfDue(): void {
    if (this.ownBatch && performance.now() - this.batchStarted > COMMIT_EVERY_MS) {
      this.commit();
      this.batch();
    }
  }

  commit(): void {
    if (this.ownBatch) {
      this.db.exec('COMMIT');
      this.ownBatch = false;
    }
  }

  private dirRecord(rootId: number, rel: string): DirRecord | null {
    if (this.recalled?.root === rootId && this.recalled.rel === rel) return this.recalled;
    const row = this.st.dirRow.get(rootId, rel) as { id: number; stamp: string | null; loose: number } | undefined;
    if (row === undefined) return null;
    const names = new Map<string, StoredName>();
    for (const r of this.st.names.all(row.id) as StoredName[]) names.set(r.name, r);
    this.recalled = { root: rootId, rel, id: row.id, stamp: row.stamp, loose: row.loose, names };
    return this.recalled;
  }

  /** The last walk's view of a directory (scan.ts Recalled). */
  recall(root: Root, rel: string): Recalled | null {
    const record = this.dirRecord(this.rootId(root), rel);
    if (record === null) return null;
    const sealed = new Map<string, number>();
    for (const n of record.names.values()) if (n.sealed === 1) sealed.set(n.name, n.size!);
    return { stamp: record.stamp, sealed };
  }

  /**
   * Every directory the last walk reached below this ROOT, by path (scan.ts
   * KnownDir): one query, where asking per directory would cost a round trip
   * each. Grouped by rel, the order of the (root, rel) index: by id, SQLite
   * would sort through a temporary B-tree, at twice the time.
   */
  knownDirs(root: Root): Map<string, KnownDir> {
    // Unsealed files as name/content/meta triples: a name cannot hold '/', the stamps are digits and punctuation.
    const rows = this.db.prepare(`SELECT d.id, d.rel, d.stamp, d.loose, COUNT(f.id) AS names, COUNT(i.ino) AS files,
        COALESCE(SUM(i.size), 0) AS bytes, group_concat(CASE WHEN i.sealed = 0 THEN f.name || '/' || i.content || '/' || i.meta END, '/')
      FROM dirs d LEFT JOIN files f ON f.dir = d.id LEFT JOIN inodes i ON i.dev = f.dev AND i.ino = f.ino
      WHERE d.root = ? GROUP BY d.rel`).raw().all(this.rootId(root)) as [number, string, string | null, number, number, number, number, string | null][];
    const known = new Map<string, KnownDir>();
    for (const [id, rel, stamp, loose, names, files, bytes, triples] of rows) {
      const unsealed = new Map<string, string>();
      const parts = triples?.split('/') ?? [];
      for (let k = 0; k < parts.length; k += 3) unsealed.set(parts[k]!, `${parts[k + 1]}/${parts[k + 2]}`);
      known.set(rel, { id, stamp, indexed: stamp !== null && loose === 0 && files === names, unsealed, files, bytes });
    }
    return known;
  }

  /** Inodes (dev:ino) that lost the immutable flag since the last walk saw them (section.ts noteUnsealed). */
  unseal(keys: string[]): void {
    const st = this.db.prepare(`UPDATE inodes SET sealed = 0 WHERE dev = ? AND ino = ?`);
    for (const key of keys) {
      const [dev, ino] = key.split(':');
      st.run(i64(BigInt(dev!)), i64(BigInt(ino!)));
    }
  }

  /** What the index records of an unsealed file, as knownDirs() gives it. */
  static fileStamp(st: FileStat): string {
    return `${contentStamp(st)}/${metaStamp(st)}`;
  }

  /** A directory the walk found unchanged without opening it. */
  passed(dir: KnownDir): void {
    this.st.visited.run(dir.id);
  }

  /** The exclusions and minimum size of the last walk that reached everything (scan.ts KnownDir needs the same). */
  walkSignature(): string | null {
    return (this.db.prepare(`SELECT value FROM meta WHERE key = 'walk'`).pluck().get() as string | undefined) ?? null;
  }

  setWalkSignature(sig: string | null): void {
    if (sig === null) this.db.prepare(`DELETE FROM meta WHERE key = 'walk'`).run();
    else this.db.prepare(`INSERT OR REPLACE INTO meta VALUES ('walk', ?)`).run(sig);
  }

  /**
   * Brings one directory's names, and the inodes they show, up to date with
   * what the walk saw; xattrs are read (through xattrsOf) only for inodes
   * that are new or whose ctime moved. Trusted names stay as they are.
   * Answers how many rows changed.
   */
  syncDir(v: DirVisit, xattrsOf: (name: string, st: FileStat) => XattrFacts): number {
    const rootId = this.rootId(v.root);
    const record = this.dirRecord(rootId, v.rel);
    this.recalled = null;
    const dir = record?.id ?? Number(this.st.addDir.run(rootId, v.rel).lastInsertRowid);
    if (record?.stamp !== v.stamp || record.loose !== v.loose) this.st.setStamp.run(v.stamp, v.loose, dir);
    this.st.visited.run(dir);
    const stored = record?.names ?? new Map<string, StoredName>();
    for (const name of v.trusted) stored.delete(name);
    let changed = 0;
    for (const { name, st } of v.files) {
      const old = stored.get(name);
      stored.delete(name);
      const content = contentStamp(st);
      if (old?.content === content) {
        if (old.meta !== metaStamp(st) || old.sealed !== Number(st.immutable)) {
          this.st.newMeta.run(this.inodeRow(st, xattrsOf(name, st)));
          changed++;
        }
        continue;
      }
      changed++;
      this.syncInode(st, content, () => xattrsOf(name, st));
      if (old === undefined) this.st.addName.run(dir, name, i64(st.dev), i64(st.ino));
      else {
        this.st.orphan.run(old.id);
        this.st.repoint.run(i64(st.dev), i64(st.ino), old.id);
      }
    }
    for (const gone of stored.values()) {
      this.st.orphan.run(gone.id);
      this.st.dropName.run(gone.id);
      changed++;
    }
    return changed;
  }

  /**
   * Unify itself changed a directory (a name replaced by a link): if the
   * directory was as the walk left it just before, the stamp it has now
   * stands for the same listing, so the next walk still trusts it.
   */
  restamp(dir: number, before: string, after: string): void {
    this.st.restamp.run(after, dir, before);
  }

  /** The inode a name now shows, known already (another of its names) or not. */
  private syncInode(st: FileStat, content: string, xattrs: () => XattrFacts): void {
    const known = this.st.inode.get(i64(st.dev), i64(st.ino)) as { content: string; meta: string; sealed: number } | undefined;
    if (known === undefined) this.st.addInode.run(this.inodeRow(st, xattrs()));
    else if (known.content !== content) this.st.newContent.run(this.inodeRow(st, xattrs()));
    else if (known.meta !== metaStamp(st) || known.sealed !== Number(st.immutable)) this.st.newMeta.run(this.inodeRow(st, xattrs()));
  }

  private inodeRow(st: FileStat, x: XattrFacts) {
    return {
      dev: i64(st.dev), ino: i64(st.ino), size: st.size, mode: st.mode, uid: st.uid, gid: st.gid, nlink: st.nlink,
      mtime_s: st.mtimeSec, mtime_ns: st.mtimeNsec, kind: x.metacopy ? Kind.Metacopy : Kind.Eligible, xattrs: x.digest,
      content: contentStamp(st), meta: metaStamp(st), sealed: Number(st.immutable),
    };
  }

  /**
   * Forgets directories of this run's ROOTs that the walk no longer reached
   * (removed, or excluded now), and inodes that no name shows any more.
   * Answers how many names went.
   */
  pruneUnseen(): number {
    const stale = `SELECT id FROM dirs WHERE root IN (SELECT root FROM run_roots) AND id NOT IN (SELECT id FROM temp.visited)`;
    this.db.prepare(`INSERT INTO temp.orphans SELECT dev, ino FROM files WHERE dir IN (${stale})`).run();
    const n = this.db.prepare(`DELETE FROM files WHERE dir IN (${stale})`).run().changes;
    this.db.prepare(`DELETE FROM replaced WHERE dir IN (${stale})`).run();
    this.db.prepare(`DELETE FROM dirs WHERE id IN (${stale})`).run();
    this.dropOrphans();
    return n;
  }

  /** Inodes that lost a name this run and that no name shows any more are forgotten. */
  dropOrphans(): void {
    this.db.prepare(`DELETE FROM inodes WHERE (dev, ino) IN (SELECT dev, ino FROM temp.orphans o
      WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.dev = o.dev AND f.ino = o.ino))`).run();
    this.db.exec(`DELETE FROM temp.orphans`);
  }

  /**
   * After a link: the replaced names show the kept inode, whose link count
   * and ctime moved; inodes that lost all their names are gone.
   */
  linked(master: Pick<FileStat, 'dev' | 'ino' | 'nlink' | 'ctimeSec' | 'ctimeNsec'>, sealed: boolean, names: number[], gone: bigint[]): void {
    // One row per statement: a statement that may change several rows inside a
    // transaction makes SQLite copy every page it touches to a statement journal.
    const dev = i64(master.dev);
    const ino = i64(master.ino);
    for (const id of names) this.st.relinkName.run(dev, ino, id);
    this.st.relinkInode.run(master.nlink, metaStamp(master), Number(sealed), dev, ino);
    for (const g of gone) this.st.dropInode.run(dev, i64(g));
  }

  /** Replaced names keep the times they had, for --revert. */
  rememberReplaced(replaced: Replaced[]): void {
    for (const r of replaced) this.st.remember.run(r.dir, r.name, r.mtimeSec, r.mtimeNsec, r.atimeSec, r.atimeNsec);
  }

  /** The times a path had before unify replaced it, if they differed from the kept inode's. */
  replacedTimes(root: number, rel: string, name: string): { mtimeSec: number; mtimeNsec: number; atimeSec: number; atimeNsec: number } | undefined {
    const r = this.db.prepare(`SELECT p.mtime_s, p.mtime_ns, p.atime_s, p.atime_ns FROM replaced p JOIN dirs d ON d.id = p.dir
      WHERE d.root = ? AND d.rel = ? AND p.name = ?`).get(root, rel, name) as Record<string, number> | undefined;
    return r && { mtimeSec: r.mtime_s!, mtimeNsec: r.mtime_ns!, atimeSec: r.atime_s!, atimeNsec: r.atime_ns! };
  }

  /** A path got its own inode back: forget it was replaced, and its name, so the next run looks afresh. */
  reverted(root: number, rel: string, name: string): void {
    const dir = (this.st.dirRow.get(root, rel) as { id: number } | undefined)?.id;
    if (dir === undefined) return;
    this.db.prepare(`DELETE FROM replaced WHERE dir = ? AND name = ?`).run(dir, name);
    this.db.prepare(`INSERT INTO temp.orphans SELECT dev, ino FROM files WHERE dir = ? AND name = ?`).run(dir, name);
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
