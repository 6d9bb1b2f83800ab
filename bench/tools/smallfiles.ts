// A child process of the metadata group: creates or unlinks many small
// files in a VE root, then syncs, and prints the seconds that took (its own
// start-up excluded). Sync I/O is right here: this process serves no mount.
//   node smallfiles.js create DIR COUNT BYTES | unlink DIR
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Files per subdirectory, as a package's tree spreads them. */
const PER_DIR = 1000;

function create(dir: string, count: number, bytes: number): void {
  const data = Buffer.alloc(bytes, 0x61);
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${Math.floor(i / PER_DIR)}`);
    if (i % PER_DIR === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${i}`), data);
  }
}

function unlink(dir: string): void {
  for (const sub of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, sub))) unlinkSync(join(dir, sub, f));
    rmdirSync(join(dir, sub));
  }
}

const [mode, dir, count, bytes] = process.argv.slice(2);
const start = process.hrtime.bigint();
if (mode === 'create') create(dir, Number(count), Number(bytes));
else if (mode === 'unlink') unlink(dir);
else throw new Error(`usage: smallfiles.js create DIR COUNT BYTES | unlink DIR (got ${mode})`);
const synced = spawnSync('sync');
if (synced.status !== 0) throw new Error(`sync failed: ${synced.stderr}`);
console.log(JSON.stringify({ seconds: Number(process.hrtime.bigint() - start) / 1e9 }));
