// A VE writing a file while unify runs either keeps its new content or, if
// the file was unchanged, gets it linked: never a mix, never a write lost.
// One writer rewrites the file again and again (open, truncate, write,
// close), alternating the template's bytes and its own; another keeps the
// file open for writing. --ignore-mtime makes every template-equal version
// linkable, so unify has a chance at the file throughout.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { withScratch } from './helpers/mounts.js';
import { bytesOf, copyTree, inodeOf, unifyJson, writeTree } from './helpers/unify.js';

const SIZE = 64 * 1024;
const template = bytesOf(SIZE, 1);
/** Version k: odd k are the template's bytes, even k the writer's own (same size). */
const version = (k: number): Buffer => {
  if (k % 2 === 1) return template;
  const b = Buffer.from(template);
  b.writeUInt32LE(k, 0);
  return b;
};

// Rewrites the file until SIGTERM, pausing up to PAUSE ms between versions; prints "ok k" after each
// version that was fully written and closed, "err CODE" on failure.
const REWRITER = `
const fs = require('node:fs');
const [file, pause] = [process.argv[1], Number(process.argv[2])];
const tpl = fs.readFileSync(process.argv[3]);
let stop = false;
process.on('SIGTERM', () => { stop = true; });
(async () => {
  for (let k = 1; !stop; k++) {
    const b = Buffer.from(tpl);
    if (k % 2 === 0) b.writeUInt32LE(k, 0);
    try { fs.writeFileSync(file, b); } catch (e) { console.log('err ' + e.code); break; }
    console.log('ok ' + k);
    await new Promise((r) => setTimeout(r, Math.random() * pause));
  }
})();
`;

function corpus(t: Parameters<typeof withScratch>[0]) {
  const s = withScratch(t, 'vefs-unify-writer');
  const tpl = path.join(s.base, 'template');
  const files: Record<string, Buffer> = { 'data/w': template };
  // Enough other work that the run lasts a while around the written file.
  for (let i = 0; i < 300; i++) files[`usr/f${i}`] = bytesOf(20_000 + i, i + 10);
  writeTree(tpl, files);
  const ves = [1, 2, 3].map((i) => {
    const ve = path.join(s.base, `ve${i}`);
    copyTree(tpl, ve);
    return ve;
  });
  return { s, tpl, ves };
}

// From a writer that never stops to one that pauses long enough for the file
// to be hashed unchanged and then changed again around the link; several
// runs each, until the file is linked.
for (const pause of [0, 20, 150, 400]) {
  test(`a rewriting VE keeps its last version or has an unchanged file linked, never a mix (pauses up to ${pause} ms)`, async (t) => {
    const { s, tpl, ves } = corpus(t);
    const w = path.join(ves[0]!, 'data/w');
    const writer = spawn(process.execPath, ['-e', REWRITER, w, String(pause), path.join(tpl, 'data/w')]);
    let out = '';
    writer.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<void>((resolve) => writer.on('exit', () => resolve()));
    const skipped: Record<string, number> = {};
    let runs = 0;
    for (; runs < 6 && inodeOf(w) !== inodeOf(path.join(tpl, 'data/w')); runs++) {
      const { report } = await unifyJson(s.stateDir, '--ignore-mtime', '--template', tpl, ...ves);
      for (const [k, v] of Object.entries(report.skipped)) skipped[k] = (skipped[k] ?? 0) + (v ?? 0);
    }
    writer.kill('SIGTERM');
    await exited;
    const lines = out.trim().split('\n').filter(Boolean);
    const written = lines.filter((l) => l.startsWith('ok ')).map((l) => Number(l.slice(3)));
    const last = written.at(-1);
    const content = fs.readFileSync(w);
    const linked = inodeOf(w) === inodeOf(path.join(tpl, 'data/w'));
    t.log(`${runs} runs, ${written.length} versions written, ${linked ? 'linked' : 'kept apart'}, skipped ${JSON.stringify(skipped)}, writer's last word: ${lines.at(-1)}`);
    t.true(written.length > 0);
    if (linked) {
      t.true(content.equals(template), 'a linked file shows the template\'s bytes');
      t.is(last! % 2, 1, `the writer's last completed version (${last}) was the template's bytes: nothing it wrote was lost`);
    } else {
      t.true(content.equals(version(last!)), `the file holds the writer's last completed version ${last}, whole`);
    }
    // The other VEs were linked whatever the writer did.
    t.is(inodeOf(path.join(ves[1]!, 'data/w')), inodeOf(path.join(tpl, 'data/w')));
  });
}

test('a file held open for writing is skipped, and keeps every write', async (t) => {
  const { s, tpl, ves } = corpus(t);
  const w = path.join(ves[0]!, 'data/w');
  const fd = fs.openSync(w, 'r+');
  t.teardown(() => fs.closeSync(fd));
  // Same bytes as the template while unify looks: only the open descriptor holds it back.
  const { report } = await unifyJson(s.stateDir, '--ignore-mtime', '--template', tpl, ...ves);
  t.is(report.skipped['open-for-writing'], 1);
  t.not(inodeOf(w), inodeOf(path.join(tpl, 'data/w')));
  fs.writeSync(fd, Buffer.from('written after the run'), 0, 21, 0);
  t.is(fs.readFileSync(w).subarray(0, 21).toString(), 'written after the run', 'the write went to the file its name shows');
});
