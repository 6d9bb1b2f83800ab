// What only the kernel-protocol binding can do (src/vefs/binding/kernel.ts):
// renameat2 flags, fallocate, SEEK_DATA/SEEK_HOLE, copy_file_range, the
// flags ioctl, POSIX ACLs enforced by the kernel, passthrough I/O with its
// one-backing-file rule, and the cache invalidation a change behind the
// mount needs. Every case mounts a real VEFS root with --binding kernel.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { mountVefs, vefsCli, withScratch } from './helpers/mounts.js';
import type { Status } from '../src/vefs/control.js';

const run = promisify(execFile);

async function py(script: string, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await run('python3', ['-u', '-c', script, ...args], { timeout: 60_000 });
  if (stdout.trim() === '') throw new Error(`python3 printed nothing; stderr: ${stderr}`);
  return stdout.trim();
}

interface Ve {
  m(rel: string): string;
  p(rel: string): string;
  tp(rel: string): string;
  status(): Promise<Status>;
  stateDir: string;
}

async function mountVe(t: ExecutionContext, fill?: (tpl: string) => void): Promise<Ve> {
  const s = withScratch(t, 'vefs-kernel');
  const tpl = s.dir('tpl');
  fs.mkdirSync(path.join(tpl, 'etc'));
  fs.writeFileSync(path.join(tpl, 'etc/motd'), 'template motd\n');
  fill?.(tpl);
  const priv = s.dir('priv');
  const mnt = s.dir('mnt');
  const m = await mountVefs({ templates: [tpl], privateDir: priv, workDir: path.join(s.base, 'work'), mountpoint: mnt,
    stateDir: s.stateDir, binding: 'kernel' });
  t.teardown(() => m.unmount());
  return {
    m: (rel) => path.join(mnt, rel),
    p: (rel) => path.join(priv, rel),
    tp: (rel) => path.join(tpl, rel),
    status: async () => JSON.parse(await vefsCli(s.stateDir, 'status', '--json')) as Status,
    stateDir: s.stateDir,
  };
}

const RENAME = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
print(0 if r == 0 else os.strerror(ctypes.get_errno()))
`;

test('renameat2: RENAME_NOREPLACE refuses an existing name, RENAME_EXCHANGE swaps a template file and a new one', async (t) => {
  const ve = await mountVe(t);
  fs.writeFileSync(ve.m('etc/new'), 'new\n');
  t.is(await py(RENAME, ve.m('etc/new'), ve.m('etc/motd'), '1'), 'File exists');
  t.is(await py(RENAME, ve.m('etc/new'), ve.m('etc/fresh'), '1'), '0');
  t.is(await py(RENAME, ve.m('etc/fresh'), ve.m('etc/motd'), '2'), '0');
  t.is(fs.readFileSync(ve.m('etc/motd'), 'utf8'), 'new\n');
  t.is(fs.readFileSync(ve.m('etc/fresh'), 'utf8'), 'template motd\n');
  t.is(fs.readFileSync(ve.tp('etc/motd'), 'utf8'), 'template motd\n', 'the template is untouched');
  t.true(fs.existsSync(ve.p('etc/fresh')), 'the template file was copied up (metacopy) to take its new name');
});

test('fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range work on the mount and keep holes', async (t) => {
  const ve = await mountVe(t, (tpl) => {
    const fd = fs.openSync(path.join(tpl, 'sparse'), 'w');
    fs.writeSync(fd, 'data at 4 MiB', 0, 'utf8');
    fs.writeSync(fd, 'data at 8 MiB', 8 << 20, 'utf8');
    fs.closeSync(fd);
  });
  const seek = await py(`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.lseek(fd, 4096, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE))`, ve.m('sparse'));
  t.is(seek, `${8 << 20} 4096`, 'SEEK_DATA and SEEK_HOLE see the template file\'s holes');

  await run('fallocate', ['-l', '16M', ve.m('prealloc')]);
  const st = fs.statSync(ve.m('prealloc'));
  t.is(st.size, 16 << 20);
  t.true(st.blocks * 512 >= 16 << 20, 'fallocate allocated the blocks');
  fs.writeFileSync(ve.m('punch'), Buffer.alloc(1 << 20, 1));
  await run('fallocate', ['--punch-hole', '-o', '0', '-l', '524288', ve.m('punch')]);
  const punched = fs.readFileSync(ve.m('punch'));
  t.true(punched.subarray(0, 524288).every((b) => b === 0) && punched.subarray(524288).every((b) => b === 1));

  const copied = await py(`
import os, sys
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while True:
    c = os.copy_file_range(src, dst, 1 << 24)
    if c == 0: break
    n += c
print(n)`, ve.m('sparse'), ve.m('copy'));
  t.is(Number(copied), fs.statSync(ve.tp('sparse')).size);
  t.deepEqual(fs.readFileSync(ve.m('copy')), fs.readFileSync(ve.tp('sparse')));
});

test('lsattr shows the flags of the layer file', async (t) => {
  const ve = await mountVe(t);
  const flags = (p: string) => run('lsattr', ['-d', p]).then((o) => o.stdout.split(/\s+/)[0]);
  t.is(await flags(ve.m('etc/motd')), await flags(ve.tp('etc/motd')));
  t.is(await flags(ve.m('etc')), await flags(ve.tp('etc')));
});

test('POSIX ACLs are enforced by the kernel: an ACL grants and denies beyond the mode bits', async (t) => {
  const ve = await mountVe(t);
  fs.writeFileSync(ve.m('granted'), 'secret\n', { mode: 0o600 });
  fs.writeFileSync(ve.m('denied'), 'public\n', { mode: 0o644 });
  await run('setfacl', ['-m', 'u:nobody:r', ve.m('granted')]);
  await run('setfacl', ['-m', 'u:nobody:---', ve.m('denied')]);
  const asNobody = (p: string) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', p])
    .then((o) => o.stdout, (e: { stderr: string }) => `error: ${e.stderr.trim()}`);
  t.is(await asNobody(ve.m('granted')), 'secret\n', 'the ACL entry grants what mode 600 does not');
  t.regex(await asNobody(ve.m('denied')), /Permission denied/, 'the ACL entry denies what mode 644 would allow');
});

/** A process that opens path, reads it, and prints its content again each time it gets a line on stdin. */
function holder(path: string) {
  const child = spawn('python3', ['-u', '-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for line in sys.stdin:
    print(os.pread(fd, 4096, 0).decode().replace('\\n', '|'), flush=True)`, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let waiting: ((l: string) => void) | null = null;
  child.stdout.setEncoding('utf8');
  let buf = '';
  child.stdout.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (waiting) {
        waiting(line);
        waiting = null;
      } else lines.push(line);
    }
  });
  return {
    read: (): Promise<string> => new Promise((res) => {
      child.stdin.write('\n');
      const l = lines.shift();
      if (l !== undefined) res(l);
      else waiting = res;
    }),
    close: () => { child.stdin.end(); child.kill(); },
  };
}

test('passthrough: file data never crosses the server, and a copy-up under an open reader gives no process the wrong file', async (t) => {
  const ve = await mountVe(t, (tpl) => fs.writeFileSync(path.join(tpl, 'big'), Buffer.alloc(8 << 20, 7)));
  const before = await ve.status();
  t.true(before.sessions[0].passthrough, 'the kernel accepted passthrough');
  t.is(fs.readFileSync(ve.m('big')).length, 8 << 20);
  fs.writeFileSync(ve.m('written'), Buffer.alloc(4 << 20, 3));
  t.is(fs.readFileSync(ve.m('written')).length, 4 << 20);
  const after = await ve.status();
  t.is(after.sessions[0].requests.READ ?? 0, 0, 'no READ request reached the server');
  t.is(after.sessions[0].requests.WRITE ?? 0, 0, 'no WRITE request reached the server');

  // A reader holds the template file open through passthrough...
  const old = holder(ve.m('etc/motd'));
  t.teardown(() => old.close());
  t.is(await old.read(), 'template motd|');
  // ...while another process copies it up by writing.
  fs.appendFileSync(ve.m('etc/motd'), 'changed by the VE\n');
  t.is(fs.readFileSync(ve.m('etc/motd'), 'utf8'), 'template motd\nchanged by the VE\n', 'the writer and later readers see the private copy');
  t.is(await old.read(), 'template motd|', 'the descriptor opened before the copy-up keeps its file');
  const fresh = holder(ve.m('etc/motd'));
  t.teardown(() => fresh.close());
  t.is(await fresh.read(), 'template motd|changed by the VE|');
  t.is(fs.readFileSync(ve.p('etc/motd'), 'utf8'), 'template motd\nchanged by the VE\n');
  t.is(fs.readFileSync(ve.tp('etc/motd'), 'utf8'), 'template motd\n', 'the template is untouched');
  // Write through a descriptor opened before another process's copy-up, too.
  fs.appendFileSync(ve.m('etc/motd'), 'again\n');
  t.is(await fresh.read(), 'template motd|changed by the VE|again|');
});

test('a change behind the mount is invisible until announced, then every lookup and open sees it', async (t) => {
  const ve = await mountVe(t);
  t.false(fs.existsSync(ve.m('behind')), 'the miss is now cached by the kernel');
  t.is(fs.readFileSync(ve.m('etc/motd'), 'utf8'), 'template motd\n');
  fs.writeFileSync(ve.p('behind'), 'made behind the mount\n');
  fs.writeFileSync(ve.tp('etc/motd'), 'template update\n');
  t.false(fs.existsSync(ve.m('behind')), 'the kernel still answers from its cache');
  const told = await vefsCli(ve.stateDir, 'invalidate', ve.p('behind'), ve.tp('etc/motd'));
  t.regex(told, /^1 mount\(s\) told/);
  t.is(fs.readFileSync(ve.m('behind'), 'utf8'), 'made behind the mount\n');
  t.is(fs.readFileSync(ve.m('etc/motd'), 'utf8'), 'template update\n');
});

test('the server lists the private files VEs hold open for writing', async (t) => {
  const ve = await mountVe(t);
  const fd = fs.openSync(ve.m('etc/motd'), 'a');
  t.teardown(() => fs.closeSync(fd));
  const ro = fs.openSync(ve.m('etc'), 'r');
  t.teardown(() => fs.closeSync(ro));
  const out = await py(`
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{"op":"open-for-writing"}\\n')
print(s.makefile().read())`, path.join(ve.stateDir, 'server.sock'));
  t.deepEqual(JSON.parse(out), { ok: true, value: [ve.p('etc/motd')] });
});
