// One server process carries many VE roots: 20 mounts of one template, each
// with its own private tree, all served by the same pid; a mount kept busy by
// many large reads does not starve another mount's requests.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { withScratch, leftoverMounts } from './helpers/mounts.js';
import { vefs, serverPid } from './helpers/vefs.js';

test('20 mounts are served by one process, each with its own private tree', async (t) => {
  const s = withScratch(t, 'vefs-many');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'hostname'), 'template\n');
  const mnts: string[] = [];
  t.teardown(async () => {
    for (const m of mnts) await vefs(s.stateDir, 'umount', m);
  });
  for (let i = 0; i < 20; i++) {
    const mnt = s.dir(`root/${i}`);
    const r = await vefs(s.stateDir, 'mount', '--template', tpl, '--private', s.dir(`private/${i}`), mnt);
    t.is(r.code, 0, r.stderr);
    mnts.push(mnt);
  }
  const pid = serverPid(s.stateDir);
  for (const [i, m] of mnts.entries()) writeFileSync(join(m, 'hostname'), `ve${i}\n`);
  for (const [i, m] of mnts.entries()) {
    t.is(readFileSync(join(m, 'hostname'), 'utf8'), `ve${i}\n`);
    t.is(readFileSync(join(s.base, `private/${i}/hostname`), 'utf8'), `ve${i}\n`);
  }
  t.is(readFileSync(join(tpl, 'hostname'), 'utf8'), 'template\n');
  const status = await vefs(s.stateDir, 'status');
  t.regex(status.stdout, new RegExp(`server pid ${pid}, .* 20 mount\\(s\\)`));
  t.is(leftoverMounts(s.base).filter((m) => m.type === 'fuse.vefs').length, 20);
  t.is(serverPid(s.stateDir), pid, 'no second server was started');
});

test('a busy mount does not starve another mount', async (t) => {
  const s = withScratch(t, 'vefs-fair');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'small'), 'x');
  const busy = s.dir('busy');
  const quiet = s.dir('quiet');
  for (const [m, p] of [[busy, 'p1'], [quiet, 'p2']]) {
    t.is((await vefs(s.stateDir, 'mount', '--template', tpl, '--private', s.dir(p), m)).code, 0);
  }
  t.teardown(async () => {
    await vefs(s.stateDir, 'umount', busy);
    await vefs(s.stateDir, 'umount', quiet);
  });
  // 48 writers keep far more requests queued on the busy mount than its in-flight bound. They
  // create files: every create reaches the server, where reads under passthrough would not.
  const writers = Array.from({ length: 48 }, (_, w) => spawn('sh', ['-c',
    `cd '${busy}' && i=0 && while [ $i -lt 300 ]; do i=$((i+1)); echo x > w${w}.$i; done`]));
  const done = Promise.all(writers.map((w) => new Promise((res) => w.once('exit', res))));
  let writersFinished = false;
  void done.then(() => (writersFinished = true));
  // Ordering, not timing: the quiet mount answers while the busy one is still busy.
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < 20; i++) statSync(join(quiet, 'small'));
  t.is(readFileSync(join(quiet, 'small'), 'utf8'), 'x');
  t.false(writersFinished, 'the quiet mount was served before the busy mount drained');
  await done;
});
