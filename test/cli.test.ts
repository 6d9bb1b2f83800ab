// Bad input to `vefs mount` and `vefs umount`: one clear message that names
// the problem, a non-zero exit, and nothing touched.
import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { withScratch, leftoverMounts } from './helpers/mounts.js';
import { vefs } from './helpers/vefs.js';

function layout(t: Parameters<typeof withScratch>[0]) {
  const s = withScratch(t, 'vefs-cli');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'f'), 'x');
  return { s, tpl, priv: s.dir('private'), mnt: s.dir('mnt'), work: join(s.base, 'work') };
}

const untouched = (t: { deepEqual(a: unknown, b: unknown): void; false(v: boolean): void }, priv: string, work: string) => {
  t.deepEqual(readdirSync(priv), []);
  t.false(existsSync(work));
};

const cases: [string, (l: ReturnType<typeof layout>) => string[], RegExp][] = [
  ['a missing template', (l) => ['--template', join(l.s.base, 'nope'), '--private', l.priv, '--work', l.work, l.mnt],
    /template .*nope does not exist/],
  ['a template inside the private tree', (l) => {
    mkdirSync(join(l.priv, 'sub'));
    return ['--template', join(l.priv, 'sub'), '--private', l.priv, '--work', l.work, l.mnt];
  }, /template .*private\/sub is inside private directory/],
  ['the private tree inside a template', (l) => {
    mkdirSync(join(l.tpl, 've'));
    return ['--template', l.tpl, '--private', join(l.tpl, 've'), '--work', l.work, l.mnt];
  }, /private directory .*template\/ve is inside template/],
  ['a mountpoint that is not a directory', (l) => {
    writeFileSync(join(l.s.base, 'file'), '');
    return ['--template', l.tpl, '--private', l.priv, '--work', l.work, join(l.s.base, 'file')];
  }, /mountpoint .*file is not a directory/],
  ['an unknown option', (l) => ['--template', l.tpl, '--private', l.priv, '--frobnicate', l.mnt], /Unknown option '--frobnicate'/],
  ['no private directory', (l) => ['--template', l.tpl, l.mnt], /--private DIR is required/],
];

for (const [what, args, message] of cases) {
  test(`mount refuses ${what}`, async (t) => {
    const l = layout(t);
    const argv = args(l);
    const r = await vefs(l.s.stateDir, 'mount', ...argv);
    t.not(r.code, 0);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n')[0].startsWith('vefs: '), true);
    if (what !== 'a template inside the private tree') untouched(t, l.priv, l.work);
    t.deepEqual(leftoverMounts(l.s.base), []);
  });
}

test('mount refuses a work directory on another filesystem', async (t) => {
  const l = layout(t);
  const shm = mkdtempSync('/dev/shm/vefs-cli-');
  t.teardown(() => rmSync(shm, { recursive: true, force: true }));
  const r = await vefs(l.s.stateDir, 'mount', '--template', l.tpl, '--private', l.priv, '--work', join(shm, 'w'), l.mnt);
  t.is(r.code, 1);
  t.regex(r.stderr, /work directory .* is not on the private directory's filesystem/);
  t.deepEqual(readdirSync(shm), []);
  untouched(t, l.priv, l.work);
});

test('mount refuses a mountpoint that is already mounted', async (t) => {
  const l = layout(t);
  t.is((await vefs(l.s.stateDir, 'mount', '--template', l.tpl, '--private', l.priv, '--work', l.work, l.mnt)).code, 0);
  const other = l.s.dir('private2');
  const r = await vefs(l.s.stateDir, 'mount', '--template', l.tpl, '--private', other, l.mnt);
  t.is(r.code, 1);
  t.regex(r.stderr, /mountpoint .*mnt is already mounted/);
  t.deepEqual(readdirSync(other), []);
  t.is((await vefs(l.s.stateDir, 'umount', l.mnt)).code, 0);
  t.deepEqual(leftoverMounts(l.s.base), []);
});

test('umount of something not mounted says so', async (t) => {
  const l = layout(t);
  const r = await vefs(l.s.stateDir, 'umount', l.mnt);
  t.is(r.code, 1);
  t.regex(r.stderr, /mnt is not mounted/);
});

test('an unknown command is a usage error', async (t) => {
  const l = layout(t);
  const r = await vefs(l.s.stateDir, 'frob');
  t.is(r.code, 2);
  t.regex(r.stderr, /unknown command 'frob'/);
});

test('mount --foreground serves from the terminal until interrupted', async (t) => {
  const l = layout(t);
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'mount', '--foreground', '--template', l.tpl, '--private', l.priv, l.mnt],
    { env: { ...process.env, VEFS_STATE_DIR: l.s.stateDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  t.teardown(() => { child.kill('SIGKILL'); });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  for (let i = 0; i < 100 && !/serving/.test(err); i++) await new Promise((r) => setTimeout(r, 50));
  t.regex(err, /serving .*mnt in the foreground/);
  writeFileSync(join(l.mnt, 'hello'), 'hi');
  t.is(readdirSync(l.priv).includes('hello'), true);
  t.false(existsSync(join(l.s.stateDir, 'server.sock')), 'no host server was involved');
  child.kill('SIGINT');
  t.is(await exited, 0);
  t.deepEqual(leftoverMounts(l.s.base), []);
});

test('relative paths are taken from the caller, not from the server', async (t) => {
  const l = layout(t);
  const { execFile } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const code = await new Promise<number>((res) => execFile(process.execPath,
    [cli, 'mount', '--template', 'template', '--private', 'private', '--work', 'work', 'mnt'],
    { cwd: l.s.base, env: { ...process.env, VEFS_STATE_DIR: l.s.stateDir } }, (err) => res(err ? 1 : 0)));
  t.is(code, 0);
  t.is(readdirSync(l.mnt).join(), 'f');
  t.is((await vefs(l.s.stateDir, 'umount', l.mnt)).code, 0);
});

test('umount refuses a mount that is in use, and works once it is free', async (t) => {
  const l = layout(t);
  t.is((await vefs(l.s.stateDir, 'mount', '--template', l.tpl, '--private', l.priv, l.mnt)).code, 0);
  const { spawn } = await import('node:child_process');
  // A process whose working directory is inside the VE root keeps it busy.
  const user = spawn('sleep', ['60'], { cwd: l.mnt, stdio: 'ignore' });
  const gone = new Promise((r) => user.once('exit', r));
  t.teardown(() => { user.kill('SIGKILL'); });
  const busy = await vefs(l.s.stateDir, 'umount', l.mnt);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /mnt is busy/);
  t.is(readdirSync(l.mnt).join(), 'f', 'the mount still serves after a refused umount');
  user.kill('SIGKILL');
  await gone;
  t.is((await vefs(l.s.stateDir, 'umount', l.mnt)).code, 0);
  t.deepEqual(leftoverMounts(l.s.base), []);
});

test('clients that race to start the server start one; a second server started by hand is refused', async (t) => {
  const s = withScratch(t, 'vefs-cli-race');
  const tpl = s.dir('template');
  writeFileSync(join(tpl, 'f'), 'x');
  const ves = [1, 2, 3, 4, 5, 6].map((n) => ({ priv: s.dir(`private${n}`), mnt: s.dir(`mnt${n}`), work: join(s.base, `work${n}`) }));
  const results = await Promise.all(ves.map((v) => vefs(s.stateDir, 'mount', '--template', tpl, '--private', v.priv, '--work', v.work, v.mnt)));
  t.deepEqual(results.map((r) => r.code), ves.map(() => 0), results.map((r) => r.stderr).join(''));
  t.is(leftoverMounts(s.base).length, ves.length);
  const log = readFileSync(join(s.stateDir, 'server.log'), 'utf8');
  t.is(log.match(/listening on/g)?.length, 1, log);
  const again = await vefs(s.stateDir, 'server');
  t.is(again.code, 1);
  t.regex(again.stderr, /another VEFS server runs or is starting/);
  for (const v of ves) t.is((await vefs(s.stateDir, 'umount', v.mnt)).code, 0);
  t.deepEqual(leftoverMounts(s.base), []);
});
