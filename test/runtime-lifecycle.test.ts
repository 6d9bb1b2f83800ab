// Every `vefs template` and `vefs ve` command on real VEs, and the runtime's
// robustness: bad input changes nothing, a lock held by a live command
// refuses a second one and one held by a dead command does not, a VE whose
// processes died is stopped and starts again, a `vefs` killed during start
// leaves nothing the next command cannot clean, and a VEFS server that dies
// under a running VE is reported. The tests share one state directory and
// one VEFS server (one of them kills it), so they run one at a time.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeLock } from '../src/runtime/lock.js';
import { Runtime } from '../src/runtime/ve.js';
import { leftoverMounts, VEFS_CLI } from './helpers/mounts.js';
import { expectExit, makeVeHost, type VeHost } from './helpers/runtime.js';
import { serverPid, type CliResult } from './helpers/vefs.js';

let h: VeHost;
test.before(async () => {
  h = await makeVeHost('vefs-rt-life');
});
test.after.always(async () => {
  await h?.cleanup();
});

const status = async (id: number): Promise<{ state: string; pid: number | null; processes: number; storage: string; cgroup: string }> => {
  const r = await h.vefs(['ve', 'status', String(id), '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
};

function recorded(id: number) {
  const rt = new Runtime(h.root);
  try {
    return rt.state.ve(id);
  } finally {
    rt.close();
  }
}

/** Nothing of a stopped VE is left: no mount, no recorded or existing cgroup. */
function nothingRunning(t: ExecutionContext, id: number, cgroupDirs: string[]): void {
  t.deepEqual(leftoverMounts(join(h.root, 'root', String(id))), []);
  t.is(recorded(id)?.cgroups ?? null, null);
  t.deepEqual(cgroupDirs.filter((d) => existsSync(d)), []);
}

test.serial('templates: create (busybox, --from), list, refuse duplicates and bad names, remove only when unused', async (t) => {
  const src = h.scratch.dir('src-root');
  mkdirSync(join(src, 'etc'));
  writeFileSync(join(src, 'etc/marker'), 'from a directory\n');
  expectExit(t, await h.vefs(['template', 'create', 'copied', '--from', src]));
  t.is(readFileSync(join(h.root, 'templates/copied/etc/marker'), 'utf8'), 'from a directory\n');
  const list = await h.vefs(['template', 'list']);
  t.regex(list.stdout, /^bb +\d+ +[\d.]+ MiB +busybox$/m);
  t.regex(list.stdout, /^copied +0 .*from /m);
  const dup = await h.vefs(['template', 'create', 'bb', '--busybox']);
  expectExit(t, dup, 1);
  t.regex(dup.stderr, /template bb exists already/);
  const bad = await h.vefs(['template', 'create', '../x', '--busybox']);
  expectExit(t, bad, 1);
  t.regex(bad.stderr, /not a valid template name/);
  expectExit(t, await h.vefs(['template', 'create', 'two', '--busybox', '--from', src]), 2);
  expectExit(t, await h.vefs(['ve', 'create', '2150', '--template', 'copied']));
  const busy = await h.vefs(['template', 'remove', 'copied']);
  expectExit(t, busy, 1);
  t.regex(busy.stderr, /template copied is used by VE 2150/);
  expectExit(t, await h.vefs(['ve', 'destroy', '2150']));
  expectExit(t, await h.vefs(['template', 'remove', 'copied']));
  t.false(existsSync(join(h.root, 'templates/copied')));
  t.notRegex((await h.vefs(['template', 'list'])).stdout, /copied/);
});

test.serial('a VE\'s whole life: create, start, exec, status, list, set, stop, mount, umount, restart, destroy', async (t) => {
  const id = 2101;
  expectExit(t, await h.vefs(['ve', 'create', String(id), '--template', 'bb', '--name', 'web', '--hostname', 'web.example',
    '--memory', '128M', '--pids', '64', '--cpus', '0.5']));
  t.is((await status(id)).state, 'stopped');
  const start = await h.vefs(['ve', 'start', 'web']);
  expectExit(t, start);
  const s = await status(id);
  t.is(s.state, 'running');
  t.is(s.storage, 'served');
  t.true(s.processes >= 1);
  t.log(`cgroup backend: ${s.cgroup}`);
  const cgroupDirs = Object.values(recorded(id)!.cgroups!.dirs);
  t.true(cgroupDirs.every((d) => existsSync(d)));
  expectExit(t, await h.vefs(['ve', 'start', String(id)]), 1);

  // stdin, stdout and the exit status pass through; the environment is clean.
  const piped = await h.vefs(['ve', 'exec', String(id), '--', '/bin/sh', '-c', 'read x; echo "got $x on $(hostname)"; env | sort | tr "\\n" " "; exit 5'], 'hello\n');
  expectExit(t, piped, 5);
  t.regex(piped.stdout, /^got hello on web\.example\n/);
  t.notRegex(piped.stdout, /VEFS_|NODE|SSH/);
  const missing = await h.vefs(['ve', 'exec', String(id), '--', '/no/such']);
  expectExit(t, missing, 1);
  t.regex(missing.stderr, /cannot run \/no\/such in VE 2101: exec \/no\/such: No such file/);

  // A write to a template file is copied up into the VE's private tree; the template keeps its own.
  expectExit(t, await h.sh(id, 'echo "export EDITOR=vi" >> /etc/profile'));
  t.regex(readFileSync(join(h.root, 'private', String(id), 'etc/profile'), 'utf8'), /EDITOR=vi/);
  t.notRegex(readFileSync(join(h.root, 'templates/bb/etc/profile'), 'utf8'), /EDITOR/);

  const list = JSON.parse((await h.vefs(['ve', 'list', '--json'])).stdout) as { id: number; state: string; diskBytes: number }[];
  const mine = list.find((v) => v.id === id)!;
  t.is(mine.state, 'running');
  t.true(mine.diskBytes > 0);
  t.regex((await h.vefs(['ve', 'list'])).stdout, /^2101 +web +running/m);

  // Limits change live; the cgroup shows it.
  expectExit(t, await h.vefs(['ve', 'set', String(id), '--memory', '96M', '--pids', '40']));
  const rec = recorded(id)!;
  t.is(rec.memory, 96 * 2 ** 20);
  const pidsDir = rec.cgroups!.dirs.pids ?? rec.cgroups!.dirs.unified!;
  t.is(readFileSync(join(pidsDir, 'pids.max'), 'utf8').trim(), '40');

  const umountRunning = await h.vefs(['ve', 'umount', String(id)]);
  expectExit(t, umountRunning, 1);
  t.regex(umountRunning.stderr, /is running: stop it/);
  const destroyRunning = await h.vefs(['ve', 'destroy', String(id)]);
  expectExit(t, destroyRunning, 1);
  t.regex(destroyRunning.stderr, /VE 2101 is running: stop it first, or destroy it with --force/);

  expectExit(t, await h.vefs(['ve', 'stop', String(id)]));
  t.is((await status(id)).state, 'stopped');
  nothingRunning(t, id, cgroupDirs);
  t.regex(readFileSync(join(h.root, 'logs', `${id}.log`), 'utf8'), /ve-init: stopping[\s\S]*every process ended/);

  // Maintenance from the host: the root alone, with the VE's changes in it.
  expectExit(t, await h.vefs(['ve', 'mount', String(id)]));
  t.regex(readFileSync(join(h.root, 'root', String(id), 'etc/profile'), 'utf8'), /EDITOR=vi/);
  t.is((await status(id)).state, 'mounted');
  expectExit(t, await h.vefs(['ve', 'mount', String(id)]), 1);
  expectExit(t, await h.vefs(['ve', 'umount', String(id)]));
  t.deepEqual(leftoverMounts(join(h.root, 'root', String(id))), []);

  expectExit(t, await h.vefs(['ve', 'start', String(id)]));
  const pid1 = (await status(id)).pid;
  expectExit(t, await h.vefs(['ve', 'restart', String(id), '--timeout', '2']));
  const pid2 = (await status(id)).pid;
  t.not(pid2, pid1);
  t.is((await h.sh(id, 'cat /etc/profile | grep -c EDITOR')).stdout, '1\n', 'the VE\'s changes survive a restart');
  const cgroupDirs2 = Object.values(recorded(id)!.cgroups!.dirs);
  expectExit(t, await h.vefs(['ve', 'destroy', String(id), '--force']));
  nothingRunning(t, id, cgroupDirs2);
  t.false(existsSync(join(h.root, 'private', String(id))));
  t.false(existsSync(join(h.root, 'root', String(id))));
  t.true(existsSync(join(h.root, 'templates/bb/bin/busybox')), 'destroy touched the template');
  expectExit(t, await h.vefs(['ve', 'status', String(id)]), 1);
});

test.serial('bad input: a clear error, a non-zero exit, nothing changed', async (t) => {
  expectExit(t, await h.vefs(['ve', 'create', '2110', '--template', 'bb', '--name', 'taken']));
  const snapshot = async (): Promise<string> => JSON.stringify([
    (await h.vefs(['ve', 'list', '--json'])).stdout, readdirSync(join(h.root, 'private')).sort(), readdirSync(join(h.root, 'root')).sort(),
  ]);
  const before = await snapshot();
  const cases: [string[], number, RegExp][] = [
    [['ve', 'start', '2999'], 1, /no VE 2999/],
    [['ve', 'create', '100', '--template', 'bb'], 1, /VE ID 100 is reserved: VE IDs start at 101/],
    [['ve', 'create', '42', '--template', 'bb'], 1, /VE ID 42 is reserved/],
    [['ve', 'create', 'abc', '--template', 'bb'], 1, /'abc' is not a VE ID/],
    [['ve', 'create', '2111', '--template', 'nope'], 1, /no template nope/],
    [['ve', 'create', '2111', '--template', 'bb', '--memory', '64X'], 1, /'64X' is not a memory size/],
    [['ve', 'create', '2111', '--template', 'bb', '--memory', '1M'], 1, /below the minimum/],
    [['ve', 'create', '2111', '--template', 'bb', '--pids', '-3'], 2, /.+/],
    [['ve', 'create', '2111', '--template', 'bb', '--pids', '2'], 1, /not a process limit/],
    [['ve', 'create', '2111', '--template', 'bb', '--cpus', '99'], 1, /not a CPU share/],
    [['ve', 'create', '2111', '--template', 'bb', '--name', 'taken'], 1, /VE 2110 is already named taken/],
    [['ve', 'create', '2111', '--template', 'bb', '--hostname', 'bad_host!'], 1, /not a valid hostname/],
    [['ve', 'create', '2110', '--template', 'bb'], 1, /VE 2110 exists already/],
    [['ve', 'create', '2111'], 2, /--template NAME is required/],
    [['ve', 'set', '2110', '--memory', 'lots'], 1, /not a memory size/],
    [['ve', 'stop', '2110'], 1, /VE 2110 is not running/],
    [['ve', 'exec', '2110', '--', 'true'], 1, /VE 2110 is not running/],
    [['ve', 'umount', '2110'], 1, /VE 2110's root is not mounted/],
    [['ve', 'frobnicate'], 2, /unknown ve command 'frobnicate'/],
    [['ve', 'start', '2110', '--bogus'], 2, /Unknown option '--bogus'/],
    [['template', 'remove', 'nope'], 1, /no template nope/],
  ];
  for (const [args, code, message] of cases) {
    const r: CliResult = await h.vefs(args);
    t.is(r.code, code, `vefs ${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, message, `vefs ${args.join(' ')}`);
  }
  t.is(await snapshot(), before);
  expectExit(t, await h.vefs(['ve', 'destroy', '2110']));
});

test.serial('a lock held by a live command refuses a second one; one held by a killed command does not', async (t) => {
  const id = 2120;
  expectExit(t, await h.vefs(['ve', 'create', String(id), '--template', 'bb']));
  const lockFile = join(h.root, 'locks', `ve.${id}.lock`);
  const release = takeLock(lockFile, `VE ${id}`);
  try {
    const r = await h.vefs(['ve', 'start', String(id)]);
    expectExit(t, r, 1);
    t.regex(r.stderr, /VE 2120 is busy: another vefs command holds its lock \(pid \d+/);
    t.is((await status(id)).state, 'stopped');
  } finally {
    release();
  }
  // A vefs command that dies (SIGKILL: no cleanup of its own) while it holds the lock releases it with its descriptor.
  const lockJs = new URL('../src/runtime/lock.js', import.meta.url).href;
  const holder = spawn(process.execPath, ['--input-type=module', '-e',
    `const { takeLock } = await import(${JSON.stringify(lockJs)}); takeLock(${JSON.stringify(lockFile)}, 'x'); console.log('held'); setInterval(() => {}, 1000);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => holder.stdout.once('data', r));
  const refused = await h.vefs(['ve', 'start', String(id)]);
  expectExit(t, refused, 1);
  t.regex(refused.stderr, new RegExp(`holds its lock \\(pid ${holder.pid}`));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  expectExit(t, await h.vefs(['ve', 'start', String(id)]));
  expectExit(t, await h.vefs(['ve', 'destroy', String(id), '--force']));
});

test.serial('a VE whose processes all died shows as stopped and starts again', async (t) => {
  const id = 2130;
  await h.startVe(id);
  const { pid } = await status(id);
  const dirs = Object.values(recorded(id)!.cgroups!.dirs);
  process.kill(pid!, 'SIGKILL');
  await sleep(300);
  t.is((await status(id)).state, 'mounted', 'its root is still mounted, but nothing runs');
  const list = await h.vefs(['ve', 'list']);
  t.notRegex(list.stdout, /^2130 .*running/m);
  expectExit(t, await h.vefs(['ve', 'start', String(id)]));
  t.is((await h.sh(id, 'echo back')).stdout, 'back\n');
  expectExit(t, await h.vefs(['ve', 'stop', String(id)]));
  nothingRunning(t, id, dirs);
  // Died again, then stopped: stop cleans what it left and says so.
  expectExit(t, await h.vefs(['ve', 'start', String(id)]));
  process.kill((await status(id)).pid!, 'SIGKILL');
  await sleep(300);
  const stop = await h.vefs(['ve', 'stop', String(id)]);
  expectExit(t, stop);
  t.regex(stop.stdout, /had stopped by itself; cleaned up/);
  expectExit(t, await h.vefs(['ve', 'destroy', String(id)]));
});

test.serial('vefs killed at any point of a start leaves nothing the next command cannot clean', async (t) => {
  const id = 2140;
  expectExit(t, await h.vefs(['ve', 'create', String(id), '--template', 'bb']));
  for (const delay of [100, 250, 400, 600, 900]) {
    const starter = spawn(process.execPath, [VEFS_CLI, 've', 'start', String(id)], { env: h.env, stdio: 'ignore' });
    const exited = new Promise((r) => starter.once('exit', r));
    await sleep(delay);
    starter.kill('SIGKILL');
    await exited;
    // Running (it got that far) or not: the next start or stop must succeed.
    const stop = await h.vefs(['ve', 'stop', String(id)]);
    t.true(stop.code === 0 || /is not running/.test(stop.stderr), `after a kill at ${delay} ms: ${stop.stderr}`);
    expectExit(t, await h.vefs(['ve', 'start', String(id)]));
    const dirs = Object.values(recorded(id)!.cgroups!.dirs);
    expectExit(t, await h.vefs(['ve', 'stop', String(id)]));
    nothingRunning(t, id, dirs);
  }
  expectExit(t, await h.vefs(['ve', 'destroy', String(id)]));
});

test.serial('a VEFS server that dies under a running VE is detected and reported; stop and start recover', async (t) => {
  const id = 2160;
  await h.startVe(id);
  process.kill(serverPid(h.scratch.stateDir), 'SIGKILL');
  await sleep(300);
  const s = await status(id);
  t.is(s.storage, 'lost');
  t.regex((await h.vefs(['ve', 'status', String(id)])).stdout, /WARNING: no VEFS server serves this root/);
  const exec = await h.vefs(['ve', 'exec', String(id), '--', 'true']);
  expectExit(t, exec, 1);
  t.regex(exec.stderr, /VE 2160's root has no VEFS server any more/);
  expectExit(t, await h.vefs(['ve', 'stop', String(id), '--timeout', '2']));
  t.deepEqual(leftoverMounts(join(h.root, 'root', String(id))), []);
  expectExit(t, await h.vefs(['ve', 'start', String(id)]));
  t.is((await status(id)).storage, 'served');
  expectExit(t, await h.vefs(['ve', 'destroy', String(id), '--force']));
});

test.serial('enter: a shell on a terminal inside the VE', async (t) => {
  const id = 2170;
  await h.startVe(id, '--hostname', 'entered');
  const r = await h.vefs(['ve', 'enter', String(id)], 'tty; hostname; exit 3\n');
  expectExit(t, r, 3);
  t.regex(r.stdout, /\/dev\/pts\/\d+/);
  t.regex(r.stdout, /entered/);
  expectExit(t, await h.vefs(['ve', 'destroy', String(id), '--force']));
});
