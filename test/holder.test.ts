// The descriptor holder driven directly, without a mount: this process hands
// it descriptors at once and takes them away while handing it others, as a
// server does when many VEs start and stop together. One holder serves them
// all, and none is left once it holds nothing. Serial: each test points
// VEFS_STATE_DIR, which the holder module reads, somewhere else.
import test from 'ava';
import fs from 'node:fs';
import { drop, held, hold } from '../src/vefs/holder.js';
import { holderPids, settledHolders, withScratch } from './helpers/mounts.js';

test.serial('descriptors handed over at once go to one holder, which exits after the last drop', async (t) => {
  const s = withScratch(t, 'vefs-holder');
  fs.mkdirSync(s.stateDir);
  process.env.VEFS_STATE_DIR = s.stateDir;
  const fds = Array.from({ length: 16 }, () => fs.openSync('/dev/null', 'r'));
  t.teardown(() => {
    for (const fd of fds) fs.closeSync(fd);
    for (const pid of holderPids(s.stateDir)) process.kill(pid, 'SIGKILL');
  });
  const name = (i: number): string => `/ve/root/${i}`;

  await Promise.all(fds.slice(0, 8).map((fd, i) => hold(name(i), fd)));
  t.is(holderPids(s.stateDir).length, 1, 'eight holds at once, one holder');
  const first = await held();
  t.deepEqual([...first.devices.keys()].sort(), [0, 1, 2, 3, 4, 5, 6, 7].map(name).sort());
  t.deepEqual(holderPids(s.stateDir), [first.pid]);

  // The drop that empties the holder races the next eight holds.
  await Promise.all([...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => drop(name(i))), ...fds.slice(8).map((fd, i) => hold(name(8 + i), fd))]);
  const second = await held();
  t.deepEqual([...second.devices.keys()].sort(), [8, 9, 10, 11, 12, 13, 14, 15].map(name).sort());
  t.deepEqual(await settledHolders(s.stateDir, 1), [second.pid], 'one holder, the one that answers');

  await Promise.all([8, 9, 10, 11, 12, 13, 14, 15].map((i) => drop(name(i))));
  t.deepEqual(await settledHolders(s.stateDir, 0), [], 'no holder is left once it holds nothing');
});

test.serial('a holder that cannot start says why', async (t) => {
  const s = withScratch(t, 'vefs-holder');
  // A socket path longer than sun_path: the holder refuses it and exits.
  const deep = `${s.stateDir}/${'d'.repeat(120)}`;
  fs.mkdirSync(deep, { recursive: true });
  process.env.VEFS_STATE_DIR = deep;
  const fd = fs.openSync('/dev/null', 'r');
  t.teardown(() => fs.closeSync(fd));
  await t.throwsAsync(hold('/ve/root/long', fd), { message: /descriptor holder exited with 1: vefs-fdholder: socket path too long/ });
  t.deepEqual(holderPids(deep), []);
});
