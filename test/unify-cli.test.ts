// `vefs unify` from the command line: bad input says what is wrong in one
// line and exits non-zero, a second concurrent unify is refused, the output
// forms (summary line, --json, --quiet, --help).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, C } from '../native/index.js';
import { withScratch } from './helpers/mounts.js';
import { copyTree, writeTree } from './helpers/unify.js';
import { vefs } from './helpers/vefs.js';

function layout(t: Parameters<typeof withScratch>[0]) {
  const s = withScratch(t, 'vefs-unify-cli');
  const tpl = path.join(s.base, 'template');
  writeTree(tpl, { 'usr/bin/a': 'same bytes\n' });
  const ve = path.join(s.base, 've');
  copyTree(tpl, ve);
  return { s, tpl, ve };
}

const cases: [string, (l: ReturnType<typeof layout>) => string[], number, RegExp][] = [
  ['no ROOT', () => [], 2, /no ROOT given/],
  ['a missing ROOT', (l) => [path.join(l.s.base, 'nope')], 1, /ROOT .*nope does not exist/],
  ['a missing template', (l) => ['--template', path.join(l.s.base, 'nope'), l.ve], 1, /template .*nope does not exist/],
  ['a ROOT that is a file', (l) => [path.join(l.ve, 'usr/bin/a')], 1, /ROOT .*usr\/bin\/a is not a directory/],
  ['a ROOT inside another', (l) => [l.ve, path.join(l.ve, 'usr')], 1, /ROOT .*ve\/usr is inside ROOT .*ve$/m],
  ['an unknown option', (l) => ['--frobnicate', l.ve], 2, /Unknown option '--frobnicate'/],
  ['a --min-size that is no number', (l) => ['--min-size', 'big', l.ve], 2, /--min-size needs a whole number/],
  ['--min-size 0', (l) => ['--min-size', '0', l.ve], 1, /--min-size must be a whole number of bytes, at least 1/],
  ['--json with --quiet', (l) => ['--json', '--quiet', l.ve], 2, /exclude each other/],
];

for (const [what, args, code, message] of cases) {
  test(`unify refuses ${what}`, async (t) => {
    const l = layout(t);
    const r = await vefs(l.s.stateDir, 'unify', ...args(l));
    t.is(r.code, code);
    t.regex(r.stderr, message);
    t.true(r.stderr.startsWith('vefs'), 'one line naming the problem');
    t.is(fs.statSync(path.join(l.ve, 'usr/bin/a')).nlink, 1, 'nothing touched');
  });
}

test('a second unify while one runs is refused, and says so', async (t) => {
  const l = layout(t);
  fs.mkdirSync(l.s.stateDir, { recursive: true });
  // Holding the job lock the way a running unify does.
  const fd = native.openat(C.AT_FDCWD, path.join(l.s.stateDir, 'unify.lock'), C.O_CREAT | C.O_RDWR, 0o600);
  t.teardown(() => native.close(fd));
  native.flockSync(fd, C.LOCK_EX | C.LOCK_NB);
  fs.writeFileSync(path.join(l.s.stateDir, 'unify.lock'), '4242\n');
  const r = await vefs(l.s.stateDir, 'unify', '--template', l.tpl, l.ve);
  t.is(r.code, 1);
  t.regex(r.stderr, /another vefs unify is running \(pid 4242\)/);
  t.is(fs.statSync(path.join(l.ve, 'usr/bin/a')).nlink, 1);
  native.flockSync(fd, C.LOCK_UN);
  t.is((await vefs(l.s.stateDir, 'unify', '--template', l.tpl, l.ve)).code, 0, 'runs once the lock is free');
});

test('two unify jobs started together: one links, the other is refused or finds nothing left', async (t) => {
  const l = layout(t);
  const [a, b] = await Promise.all([
    vefs(l.s.stateDir, 'unify', '--json', '--template', l.tpl, l.ve),
    vefs(l.s.stateDir, 'unify', '--json', '--template', l.tpl, l.ve),
  ]);
  const outcomes = [a, b].map((r) => (r.code === 0 ? (JSON.parse(r.stdout) as { linksMade: number }).linksMade : r.stderr.trim()));
  t.is(outcomes.filter((o) => o === 1).length, 1, JSON.stringify(outcomes));
  for (const o of outcomes) if (typeof o === 'string') t.regex(o, /another vefs unify is running/);
  t.is(fs.statSync(path.join(l.ve, 'usr/bin/a')).nlink, 2);
});

test('a summary line without a terminal, JSON with --json, nothing with --quiet, usage with --help', async (t) => {
  const l = layout(t);
  const plain = await vefs(l.s.stateDir, 'unify', '--dry-run', '--template', l.tpl, l.ve);
  t.is(plain.code, 0);
  t.regex(plain.stdout, /^vefs unify \(dry run\): 2 files scanned, 44 B read, 1 group, 1 link to make, 0 already linked, 1 inode and 11 B would be reclaimed, [\d.]+ s\n$/);
  t.is(plain.stderr, '', 'no progress bar off a terminal');
  const json = await vefs(l.s.stateDir, 'unify', '--json', '--template', l.tpl, l.ve);
  const report = JSON.parse(json.stdout) as Record<string, unknown>;
  for (const key of ['filesScanned', 'bytesRead', 'groups', 'linksMade', 'inodesReclaimed', 'bytesReclaimed', 'seconds', 'section']) {
    t.true(key in report, key);
  }
  const quiet = await vefs(l.s.stateDir, 'unify', '--quiet', '--template', l.tpl, l.ve);
  t.is(quiet.code, 0);
  t.is(quiet.stdout + quiet.stderr, '');
  const help = await vefs(l.s.stateDir, 'unify', '--help');
  t.regex(help.stdout, /--exclude PATTERN/);
  t.regex(help.stdout, /\/etc \/var \/tmp \/home \/root \/run/);
  t.regex((await vefs(l.s.stateDir, 'help')).stdout, /unify \[--template DIR\]/);
});
