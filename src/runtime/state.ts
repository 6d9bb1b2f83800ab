// The runtime's database (SQLite, WAL, in the state directory): templates and
// VEs with their config, and for a started VE its PID 1 (with the kernel's
// start time of that process, so that a reused pid is never mistaken for it)
// and its cgroups. The cgroups are recorded before they are created, so that
// a command that crashed half-way leaves a record the next one cleans from.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CgroupSet } from './cgroup.js';
import type { NetConfig, NetMode } from './net.js';

export interface Limits {
  /** Bytes; null: unlimited. */
  memory: number | null;
  pids: number | null;
  /** A fraction of one CPU. */
  cpus: number | null;
}

export interface VeConfig extends Limits, NetConfig {
  id: number;
  name: string | null;
  template: string;
  hostname: string;
}

export interface VeRecord extends VeConfig {
  created: string;
  /** Host pid of PID 1 while started, with its start time in clock ticks since boot. */
  pid: number | null;
  pidStart: number | null;
  started: string | null;
  cgroups: CgroupSet | null;
}

export interface TemplateRecord {
  name: string;
  source: string;
  created: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS templates (
  name TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ves (
  id INTEGER PRIMARY KEY,
  name TEXT UNIQUE,
  template TEXT NOT NULL REFERENCES templates(name),
  hostname TEXT NOT NULL,
  memory INTEGER,
  pids INTEGER,
  cpus REAL,
  net TEXT NOT NULL,
  ip TEXT,
  created TEXT NOT NULL,
  pid INTEGER,
  pid_start INTEGER,
  started TEXT,
  cgroups TEXT
);`;

interface VeRow {
  id: number; name: string | null; template: string; hostname: string; memory: number | null; pids: number | null;
  cpus: number | null; net: NetMode; ip: string | null; created: string; pid: number | null; pid_start: number | null; started: string | null; cgroups: string | null;
}

const fromRow = (r: VeRow): VeRecord => ({
  id: r.id, name: r.name, template: r.template, hostname: r.hostname, memory: r.memory, pids: r.pids, cpus: r.cpus,
  net: r.net, ip: r.ip, created: r.created, pid: r.pid, pidStart: r.pid_start, started: r.started,
  cgroups: r.cgroups === null ? null : (JSON.parse(r.cgroups) as CgroupSet),
});

export class State {
  private readonly db: Database.Database;

  constructor(file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // Commands on different VEs run at once; a writer waits for another instead of failing.
    this.db.pragma('busy_timeout = 10000');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  template(name: string): TemplateRecord | undefined {
    return this.db.prepare('SELECT name, source, created FROM templates WHERE name = ?').get(name) as TemplateRecord | undefined;
  }

  templates(): (TemplateRecord & { ves: number })[] {
    return this.db.prepare(`SELECT t.name, t.source, t.created, (SELECT count(*) FROM ves v WHERE v.template = t.name) AS ves
      FROM templates t ORDER BY t.name`).all() as (TemplateRecord & { ves: number })[];
  }

  addTemplate(t: TemplateRecord): void {
    this.db.prepare('INSERT INTO templates (name, source, created) VALUES (@name, @source, @created)').run(t);
  }

  removeTemplate(name: string): void {
    this.db.prepare('DELETE FROM templates WHERE name = ?').run(name);
  }

  vesOfTemplate(name: string): number[] {
    return (this.db.prepare('SELECT id FROM ves WHERE template = ? ORDER BY id').all(name) as { id: number }[]).map((r) => r.id);
  }

  ve(id: number): VeRecord | undefined {
    const r = this.db.prepare('SELECT * FROM ves WHERE id = ?').get(id) as VeRow | undefined;
    return r && fromRow(r);
  }

  veByName(name: string): VeRecord | undefined {
    const r = this.db.prepare('SELECT * FROM ves WHERE name = ?').get(name) as VeRow | undefined;
    return r && fromRow(r);
  }

  ves(): VeRecord[] {
    return (this.db.prepare('SELECT * FROM ves ORDER BY id').all() as VeRow[]).map(fromRow);
  }

  addVe(c: VeConfig, created: string): void {
    this.db.prepare(`INSERT INTO ves (id, name, template, hostname, memory, pids, cpus, net, ip, created)
      VALUES (@id, @name, @template, @hostname, @memory, @pids, @cpus, @net, @ip, @created)`).run({ ...c, created });
  }

  updateConfig(c: VeConfig): void {
    this.db.prepare(`UPDATE ves SET name = @name, hostname = @hostname, memory = @memory, pids = @pids, cpus = @cpus,
      net = @net, ip = @ip WHERE id = @id`).run(c);
  }

  setCgroups(id: number, cgroups: CgroupSet | null): void {
    this.db.prepare('UPDATE ves SET cgroups = ? WHERE id = ?').run(cgroups === null ? null : JSON.stringify(cgroups), id);
  }

  setStarted(id: number, pid: number, pidStart: number, started: string): void {
    this.db.prepare('UPDATE ves SET pid = ?, pid_start = ?, started = ? WHERE id = ?').run(pid, pidStart, started, id);
  }

  setStopped(id: number): void {
    this.db.prepare('UPDATE ves SET pid = NULL, pid_start = NULL, started = NULL, cgroups = NULL WHERE id = ?').run(id);
  }

  removeVe(id: number): void {
    this.db.prepare('DELETE FROM ves WHERE id = ?').run(id);
  }
}
