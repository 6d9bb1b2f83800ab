// Isolation of a running VE, checked from inside it as an attacker with root
// in the VE would try: the host's files, processes, kernel settings, devices,
// mounts, modules and capabilities stay out of reach, through `vefs ve exec`
// (which must restrict as much as start does) and from PID 1's own view.
import test from 'ava';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { buildProbe, expectExit, makeVeHost, type VeHost } from './helpers/runtime.js';

let h: VeHost;
const A = 3101;
const B = 3102;
let secret: string;

test.before(async () => {
  h = await makeVeHost('vefs-rt-iso');
  await h.startVe(A, '--hostname', 'alpha');
  await h.startVe(B, '--hostname', 'beta');
  secret = join(h.scratch.base, 'host-secret');
  writeFileSync(secret, 'host only\n');
  const probe = join(h.scratch.base, 'probe');
  await buildProbe(probe);
  // Copied in through the VE's root, as an operator would: it lands in A's private tree.
  copyFileSync(probe, join(h.root, 'root', String(A), 'root/probe'));
});

test.after.always(async () => {
  await h?.cleanup();
});

test('each VE has its own hostname, PID 1, processes and files', async (t) => {
  const a = await h.sh(A, 'hostname; echo from-a > /root/mine; cat /root/mine');
  expectExit(t, a);
  t.is(a.stdout, 'alpha\nfrom-a\n');
  // B runs nothing else (the other tests use A): its init, this shell and ps, and no host process.
  const b = await h.sh(B, 'hostname; ps -o pid,comm; ls /root; cat /root/mine 2>&1; true');
  expectExit(t, b);
  t.is(b.stdout.split('\n')[0], 'beta');
  t.regex(b.stdout, /^\s*1 memfd:ve-init$/m, 'PID 1 of the VE is its init');
  t.is(b.stdout.split('\n').filter((l) => /^\s*\d+ /.test(l)).length, 3, b.stdout);
  t.notRegex(b.stdout, /from-a/, 'B sees A\'s file');
  t.is(hostname() === 'alpha' || hostname() === 'beta', false, 'the host\'s hostname changed');
});

test('the attacker probe: every escape and privileged call fails, through exec', async (t) => {
  const r = await h.vefs(['ve', 'exec', String(A), '--', '/root/probe', secret]);
  expectExit(t, r);
  const got = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]));
  t.log(r.stdout.trim().replace(/\n/g, ', '));
  for (const [what, errno] of Object.entries(got)) t.not(errno, 0, `${what} succeeded inside the VE`);
  t.is(Object.keys(got).length, 21, r.stdout);
  t.is(readFileSync(secret, 'utf8'), 'host only\n');
});

test('/proc and /sys are hardened: core_pattern, sysrq-trigger, masked files, read-only /sys', async (t) => {
  const before = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
  const r = await h.sh(A, [
    'echo "|/tmp/pwn" > /proc/sys/kernel/core_pattern && echo CORE_PATTERN_WRITTEN',
    'echo h > /proc/sysrq-trigger && echo SYSRQ_WRITTEN',
    'echo 1 > /proc/sys/vm/drop_caches && echo DROP_CACHES_WRITTEN',
    'for f in /proc/kcore /proc/keys /proc/timer_list /proc/kallsyms; do [ -s $f ] && echo READABLE $f; done',
    'touch /sys/kernel/x 2>/dev/null && echo SYS_WRITTEN',
    'echo 1 > /sys/kernel/mm/ksm/run 2>/dev/null && echo SYS_WRITTEN',
    'ls /sys/firmware | wc -l',
    'grep -c " /proc/sys proc ro" /proc/mounts',
    'exit 0',
  ].join('; '));
  expectExit(t, r);
  t.notRegex(r.stdout, /WRITTEN|READABLE/);
  t.regex(r.stdout, /^0\n1\n$/m);
  t.is(readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), before);
});

test('/dev holds only the small set, on its own tmpfs; no device node can be made', async (t) => {
  const r = await h.sh(A, 'ls /dev | tr "\\n" " "; echo; echo x > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; mknod /dev/sda b 8 0 || echo mknod-refused; ls -l /dev/pts/ptmx | cut -c1');
  expectExit(t, r);
  t.is(r.stdout.split('\n')[0], 'console fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ');
  t.regex(r.stdout, /null-ok\n4\nmknod-refused\nc/);
});

test('no host mount, network interface or kernel module is reachable; mount is refused', async (t) => {
  const r = await h.sh(A, 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "; mount -t tmpfs none /mnt 2>&1 || echo mount-refused; insmod /x.ko 2>&1 || echo insmod-refused; cd /../../../..; ls');
  expectExit(t, r);
  t.is(r.stdout.split('\n')[0], 'lo', 'the VE has its own network namespace with only lo');
  t.regex(r.stdout, /mount-refused/);
  t.regex(r.stdout, /insmod-refused/);
  t.regex(r.stdout, /\nbin\n/);
  t.notRegex(r.stdout, /host-secret|vefs-rt-iso/);
});

test('a host process cannot be seen or signalled from a VE', async (t) => {
  // This test's own pid, and 1: neither may be the host's process from inside.
  const r = await h.sh(A, `kill -0 ${process.pid} 2>&1 || echo no-such; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '`);
  expectExit(t, r);
  t.regex(r.stdout, /no-such/);
  t.regex(r.stdout, /ve-init --ve-init/, '/proc/1 is the VE\'s init, not the host\'s');
});

test('exec applies the same restrictions as PID 1: bounding set, no_new_privs, seccomp, cgroup', async (t) => {
  const r = await h.sh(A, 'grep -E "^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp):" /proc/1/status; echo --; grep -E "^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status; echo --; cat /proc/self/cgroup | grep -E "memory|pids"');
  expectExit(t, r);
  const [init, self, cg] = r.stdout.split('--\n');
  t.is(self, init);
  t.regex(self!, /CapBnd:\s+00000000a00425fb/);
  t.regex(self!, /CapInh:\s+0+\n/);
  t.regex(self!, /NoNewPrivs:\s+1/);
  t.regex(self!, /Seccomp:\s+2/);
  // In its own cgroup namespace the VE's cgroup is its root.
  t.regex(cg!, /memory:\/\n/);
});

test('the console goes to the VE\'s log', async (t) => {
  const r = await h.sh(A, 'echo hello-console > /dev/console');
  expectExit(t, r);
  t.regex(readFileSync(join(h.root, 'logs', `${A}.log`), 'utf8'), /ve-init: started[\s\S]*hello-console/);
});
