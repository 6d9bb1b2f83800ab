// The server dies (kill -9) and no new server takes over (test/restart.test.ts
// is the takeover): `vefs umount` clears the dead mount, the next
// mount of the same trees removes what the crash left in the work directory
// and shows the same files. A copy-up cut short at any moment leaves the
// template version or the complete copy, never a torn file.
import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync, closeSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withScratch, leftoverMounts } from './helpers/mounts.js';
import { snapshotTree, diffSnapshots } from './helpers/tree.js';
import { vefs, serverPid } from './helpers/vefs.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** The binding the server mounts with (test/run.mjs sets it; the default is kernel). */
const binding = process.env.VEFS_BINDING || 'kernel';

test('after kill -9 of the server, umount clears the mount and a remount shows the same files', async (t) => {
  const s = withScratch(t, 'vefs-crash');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'a'), 'template a\n');
  mkdirSync(join(tpl, 'd'));
  writeFileSync(join(tpl, 'd/b'), 'template b\n');
  const priv = s.dir('private');
  const work = join(s.base, 'work');
  const mnt = s.dir('mnt');
  const mount = () => vefs(s.stateDir, 'mount', '--template', tpl, '--private', priv, '--work', work, mnt);
  t.is((await mount()).code, 0);
  writeFileSync(join(mnt, 'a'), 've a\n');
  writeFileSync(join(mnt, 'new'), 'new\n');
  await import('node:fs/promises').then((f) => f.rm(join(mnt, 'd/b')));
  const before = snapshotTree(mnt, { withAtime: false });

  process.kill(serverPid(s.stateDir), 'SIGKILL');
  await sleep(200);
  if (binding === 'fuse-native') {
    t.throws(() => statSync(join(mnt, 'a')), { code: 'ENOTCONN' });
  } else {
    // The descriptor holder keeps the connection: a VE's requests wait for a new server (no stat here: it would wait too).
    t.true(leftoverMounts(s.base).some((m) => m.target === mnt), 'the mount outlives its server');
  }
  // What a crash in the middle of a copy-up leaves behind.
  writeFileSync(join(work, 'vefs', '#deadbeef00000000'), 'half a copy');

  const u = await vefs(s.stateDir, 'umount', mnt);
  t.is(u.code, 0, u.stderr + u.stdout);
  t.regex(u.stdout, /detached/);
  t.deepEqual(leftoverMounts(s.base), []);

  t.is((await mount()).code, 0);
  t.deepEqual(readdirSync(join(work, 'vefs')), []);
  t.deepEqual(diffSnapshots(before, snapshotTree(mnt, { withAtime: false })), []);
  t.is(readFileSync(join(mnt, 'a'), 'utf8'), 've a\n');
  t.is((await vefs(s.stateDir, 'umount', mnt)).code, 0);
});

test('kill -9 during copy-up of a large file never leaves a torn file', async (t) => {
  const s = withScratch(t, 'vefs-crash-copyup');
  const tpl = s.dir('template');
  const size = 192 * 2 ** 20;
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) big.writeUInt32LE((i ^ 0x9e3779b9) >>> 0, i);
  writeFileSync(join(tpl, 'big'), big);
  const templateHash = sha(big);
  const priv = s.dir('private');
  const work = join(s.base, 'work');
  const mnt = s.dir('mnt');
  const outcomes = { template: 0, copy: 0 };
  for (let round = 0; round < 6; round++) {
    const m = await vefs(s.stateDir, 'mount', '--template', tpl, '--private', priv, '--work', work, mnt);
    t.is(m.code, 0, m.stderr);
    // A writer in another process opens the template file for writing: that triggers the copy-up.
    const writer = spawn('python3', ['-c', `import os\nfd=os.open(${JSON.stringify(join(mnt, 'big'))}, os.O_WRONLY)\nos.pwrite(fd, b'V', 0)\nos.close(fd)`],
      { stdio: 'ignore' });
    const exited = new Promise((r) => writer.once('exit', r));
    await sleep(round * 60);
    process.kill(serverPid(s.stateDir), 'SIGKILL');
    // On the kernel binding the writer waits for a new server until the umount ends the connection.
    t.is((await vefs(s.stateDir, 'umount', mnt)).code, 0);
    await exited;
    t.deepEqual(leftoverMounts(s.base), []);
    const copy = join(priv, 'big');
    if (existsSync(copy)) {
      const data = readFileSync(copy);
      t.is(data.length, size, `round ${round}: the private copy is complete`);
      const first = data[0];
      data[0] = big[0];
      t.is(sha(data), templateHash, `round ${round}: the private copy holds the template's bytes`);
      t.true(first === big[0] || first === 'V'.charCodeAt(0));
      outcomes.copy++;
      // Start the next round from the template again.
      await import('node:fs/promises').then((f) => f.rm(copy));
    } else {
      outcomes.template++;
    }
    t.is(sha(readFileSync(join(tpl, 'big'))), templateHash, 'the template is never written');
  }
  // Remounting cleans what the last crash left in the work directory.
  t.is((await vefs(s.stateDir, 'mount', '--template', tpl, '--private', priv, '--work', work, mnt)).code, 0);
  t.deepEqual(readdirSync(join(work, 'vefs')), []);
  t.is((await vefs(s.stateDir, 'umount', mnt)).code, 0);
  t.log(`outcomes over 6 kills: template version ${outcomes.template}, complete copy ${outcomes.copy}`);
});

test('umount of a live mount goes through the server; the server keeps serving others', async (t) => {
  const s = withScratch(t, 'vefs-crash-live');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'f'), 'x');
  const mnts = [s.dir('m1'), s.dir('m2')];
  for (const [i, m] of mnts.entries()) {
    t.is((await vefs(s.stateDir, 'mount', '--template', tpl, '--private', s.dir(`p${i}`), m)).code, 0);
  }
  const r = await vefs(s.stateDir, 'umount', mnts[0]);
  t.regex(r.stdout, /unmounted/);
  t.is(readFileSync(join(mnts[1], 'f'), 'utf8'), 'x');
  const fd = openSync(join(mnts[1], 'g'), 'w');
  writeSync(fd, 'y');
  closeSync(fd);
  t.is((await vefs(s.stateDir, 'umount', mnts[1])).code, 0);
});
