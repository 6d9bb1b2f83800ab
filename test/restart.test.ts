// One process carries every VE root, so its crash must not take the VEs
// down: kill -9 of the server under 20 busy kernel-binding mounts, a new
// server takes them over (descriptor holder, node ID journal, resent
// requests), and the VEs see a stall, never an error. Mounts made and
// unmade at once share one descriptor holder, which is gone after the last.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { leftoverMounts, settledHolders, mountVefs, vefsCli, withScratch, VEFS_CLI, type Mounted } from './helpers/mounts.js';
import type { Status } from '../src/vefs/control.js';

const MOUNTS = 20;
const ROUNDS = 60;

/**
 * A VE's busy shell, working from a directory inside its root: writes,
 * reads, stats, lists, creates and removes, and prints FAIL for anything
 * that went wrong. Ends by printing DONE.
 */
const BUSY = `
cd "$1/work" || { echo FAIL cd; exit 1; }
i=0
while [ $i -lt ${ROUNDS} ]; do
  i=$((i+1))
  echo "line $i" >> log || echo "FAIL append $i"
  [ "$(tail -n 1 log)" = "line $i" ] || echo "FAIL read $i"
  stat ../etc/motd > /dev/null || echo "FAIL stat $i"
  ls .. > /dev/null || echo "FAIL ls $i"
  mkdir d$i && rmdir d$i || echo "FAIL mkdir/rmdir $i"
  cat ../etc/motd > /dev/null || echo "FAIL cat $i"
  sleep 0.01
done
echo DONE
`;

function busy(mnt: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', BUSY, 'busy', mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', () => resolve(out));
  });
}

test('kill -9 of the server under 20 busy mounts: a new server takes over, the VEs see no error', async (t) => {
  const s = withScratch(t, 'vefs-restart');
  const tpl = s.dir('tpl');
  fs.mkdirSync(path.join(tpl, 'etc'));
  fs.writeFileSync(path.join(tpl, 'etc/motd'), 'template motd\n');
  const mnts: string[] = [];
  for (let i = 0; i < MOUNTS; i++) {
    const mnt = s.dir(`mnt${i}`);
    await mountVefs({ templates: [tpl], privateDir: s.dir(`priv${i}`), workDir: path.join(s.base, `work${i}`), mountpoint: mnt,
      stateDir: s.stateDir, binding: 'kernel' });
    fs.mkdirSync(path.join(mnt, 'work'));
    mnts.push(mnt);
  }
  const loads = mnts.map((m) => busy(m));
  await sleep(1500);

  const pid = Number(fs.readFileSync(path.join(s.stateDir, 'server.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  // The VEs stall meanwhile; their requests wait in the kernel.
  await sleep(2000);
  t.is(leftoverMounts(s.base).length, MOUNTS, 'every mount is still there with its server dead');
  const server = spawn(process.execPath, [VEFS_CLI, 'server'], {
    detached: true, stdio: ['ignore', fs.openSync(path.join(s.stateDir, 'server.log'), 'a'), 'inherit'],
    env: { ...process.env, VEFS_STATE_DIR: s.stateDir }, cwd: '/',
  });
  server.unref();

  const outputs = await Promise.all(loads);
  const resent = fs.readFileSync(path.join(s.stateDir, 'server.log'), 'utf8').split('\n').filter((l) => l.includes('resent'));
  for (const [i, out] of outputs.entries()) {
    t.is(out.trim(), 'DONE', `VE ${i} saw no error; requests resent after the takeover:\n${resent.join('\n')}`);
    const log = fs.readFileSync(path.join(mnts[i], 'work/log'), 'utf8');
    t.is(log, Array.from({ length: ROUNDS }, (_, j) => `line ${j + 1}\n`).join(''), `VE ${i}'s file has every line once, in order`);
  }
  const status = JSON.parse(await vefsCli(s.stateDir, 'status', '--json')) as Status;
  t.is(status.pid, server.pid ?? -1, 'the new server answers');
  t.is(status.mounts.length, MOUNTS, 'and serves every mount');
  const took = fs.readFileSync(path.join(s.stateDir, 'server.log'), 'utf8').split('\n').filter((l) => l.includes('took over'));
  t.is(took.length, MOUNTS);
});

test('mounts made and unmade at once share one descriptor holder, which exits after the last umount', async (t) => {
  const s = withScratch(t, 'vefs-holder');
  const tpl = s.dir('tpl');
  fs.writeFileSync(path.join(tpl, 'motd'), 'template motd\n');
  const mount = (i: number): Promise<Mounted> => mountVefs({ templates: [tpl], privateDir: s.dir(`priv${i}`),
    workDir: path.join(s.base, `work${i}`), mountpoint: s.dir(`mnt${i}`), stateDir: s.stateDir, binding: 'kernel' });
  const batch = (round: number): Promise<Mounted[]> => Promise.all(Array.from({ length: 8 }, (_, i) => mount(round * 8 + i)));
  // Eight clients wait on the server's start and then mount at once, with no
  // holder yet: they race to start one. Three times, with a new server each.
  let mounted: Mounted[] = [];
  for (let round = 0; round < 3; round++) {
    mounted = await batch(round);
    t.is((await settledHolders(s.stateDir, 1)).length, 1, `round ${round}: eight mounts made at once, one holder`);
    await Promise.all(mounted.map((m) => m.unmount()));
    await vefsCli(s.stateDir, 'shutdown');
  }
  // The next eight go on while the last eight come off: a drop that empties
  // the holder races their holds.
  mounted = await batch(3);
  const next = batch(4);
  await Promise.all(mounted.map((m) => m.unmount()));
  mounted = await next;
  for (const m of mounted) t.is(fs.readFileSync(path.join(m.mountpoint, 'motd'), 'utf8'), 'template motd\n');
  t.is((await settledHolders(s.stateDir, 1)).length, 1, 'one holder after the overlap');
  const status = JSON.parse(await vefsCli(s.stateDir, 'status', '--json')) as Status;
  t.is(status.mounts.length, 8);
  await Promise.all(mounted.map((m) => m.unmount()));
  t.deepEqual(await settledHolders(s.stateDir, 0), [], 'no holder is left once nothing is mounted');
});
